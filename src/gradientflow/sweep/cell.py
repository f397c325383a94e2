"""One cell of a sweep, trained in a worker (a pool process, a Ray task or this process).

Testing only: ``GRADIENTFLOW_TEST_KILL_CELL=<cell name>`` makes the process that starts that cell
SIGKILL itself, as the out-of-memory killer would kill it (the sweep's kill tests use it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

TEST_KILL_CELL = "GRADIENTFLOW_TEST_KILL_CELL"

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

    if os.environ.get(TEST_KILL_CELL) == Path(folder).name:  # testing only: see the module's docstring
        os.kill(os.getpid(), signal.SIGKILL)
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
