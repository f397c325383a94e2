"""Run a sweep's cells on a pool of worker processes (one torch thread each) into one folder:
``DIR/runs/<cell>`` (stored runs, readable by ``gradientflow runs``), ``DIR/spec.json`` and ``DIR/results.parquet``
(one row per cell, rewritten atomically each time a cell ends, so a killed sweep keeps every row
it had). Running the same sweep again skips the cells whose run ended (finished or diverged) and
resumes the others from their last checkpoint; a cell that raises is recorded as failed with its
message and the others go on.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..store import Run, write_atomic, write_json
from .spec import Cell, SweepSpec

RESULT_FIELDS = ("cell", "status", "steps", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
                 "message")
ENDED = ("finished", "diverged")


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
        row = {k: v for k, v in summary.to_dict().items() if k in RESULT_FIELDS}
    except Exception as err:  # noqa: BLE001 - a cell's failure is data, the sweep goes on
        row = {"status": "failed", "message": f"{type(err).__name__}: {err}"}
    finally:
        torch.set_num_threads(threads)  # in the caller's process (workers=1), leave it as it was
    row.setdefault("seconds", time.perf_counter() - start)
    return row


def _stored(folder: Path) -> dict | None:
    """The row of a cell whose run already ended, from its status.json; None otherwise."""
    if not (folder / "config.json").exists():
        return None
    status = Run(folder).status()
    if status.get("status") not in ENDED:
        return None
    return {k: status.get(k) for k in RESULT_FIELDS if k in status}


def run_sweep(spec: SweepSpec, out: str | Path, *, workers: int = 1, progress: bool = False) -> dict:
    """Every cell of ``spec`` into ``out``; returns the counts and the results file's path."""
    cells = spec.cells()  # every config validated before anything is written
    if not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ValueError(f"workers={workers!r} must be an integer from 1 to 256")
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", {"base": spec.base, "grid": spec.grid, "random": spec.random})
    rows: dict[str, dict] = {}
    todo: list[Cell] = []
    for cell in cells:
        kept = _stored(out / "runs" / cell.name)
        if kept is not None:
            rows[cell.name] = kept
        else:
            todo.append(cell)
    _write(out, cells, rows)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", desc="sweep")

    def ended(cell: Cell, row: dict) -> None:
        rows[cell.name] = row
        _write(out, cells, rows)
        if bar is not None:
            bar.update()

    try:
        if workers == 1 or len(todo) <= 1:
            for cell in todo:
                ended(cell, run_cell(cell.config.model_dump(), str(out / "runs" / cell.name)))
        else:
            context = multiprocessing.get_context("spawn")  # no forked torch state in the workers
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
                futures = {pool.submit(run_cell, c.config.model_dump(), str(out / "runs" / c.name)): c for c in todo}
                for future in as_completed(futures):
                    ended(futures[future], future.result())
    finally:
        if bar is not None:
            bar.close()
    statuses = [rows[c.name]["status"] for c in cells]
    return {"cells": len(cells), "finished": statuses.count("finished"), "diverged": statuses.count("diverged"),
            "failed": statuses.count("failed"), "results": str(out / "results.parquet")}


def _write(out: Path, cells: list[Cell], rows: dict[str, dict]) -> None:
    """``results.parquet``: per cell in spec order, the varied fields and its result ("pending" until it ends)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    varied = list(dict.fromkeys(k for c in cells for k in c.varied))
    records = []
    for c in cells:
        got = rows.get(c.name, {"status": "pending"})
        record = {**{k: c.varied.get(k) for k in varied}, "cell": c.name}
        for k in RESULT_FIELDS[1:]:
            v = got.get(k)
            record[k] = math.nan if v is None and k not in ("status", "message", "steps") else v  # float columns
        records.append(record)
    table = pa.Table.from_pylist(records)
    write_atomic(out / "results.parquet", lambda f: pq.write_table(table, f))


def read_results(out: str | Path) -> list[dict]:
    """The rows of ``out/results.parquet``; ValueError when there is none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out) / "results.parquet"
    if not path.is_file():
        raise ValueError(f"{str(out)!r} has no results.parquet: not a sweep folder (gradientflow sweep run SPEC --out DIR)")
    # read in one go: a running sweep replaces the file as cells end, and a reader that opens it
    # twice (footer, then data) could see two versions
    return pq.read_table(pa.BufferReader(path.read_bytes())).to_pylist()
