"""One cell of a sweep, trained in a worker (a pool process, a Ray task or this process)."""

from __future__ import annotations

import time
from pathlib import Path

RESULT_FIELDS = ("cell", "status", "steps", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
                 "message")


def result_row(values: dict) -> dict:
    """A cell's row of ``results.parquet`` from a run's summary or its status.json: the result fields it has."""
    return {k: values[k] for k in RESULT_FIELDS if k in values}


def run_cell(config: dict, folder: str) -> dict:
    """Train one cell (in a worker): a new run, or the resumption of a stored one. Never raises:
    a failure is a row with status "failed" and its message."""
    import torch

    from .. import job
    from ..config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per cell: the same numbers whatever the pool's size
    start = time.perf_counter()
    try:
        path = Path(folder)
        summary = job.resume(path) if (path / "config.json").exists() else job.run(TrainConfig(**config), path)
        row = result_row(summary.to_dict())
    except Exception as err:  # noqa: BLE001 - a cell's failure is data, the sweep goes on
        row = {"status": "failed", "message": f"{type(err).__name__}: {err}"}
    finally:
        torch.set_num_threads(threads)  # in the caller's process (workers=1), leave it as it was
    row.setdefault("seconds", time.perf_counter() - start)
    return row
