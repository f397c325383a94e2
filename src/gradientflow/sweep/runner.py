"""Run a sweep's cells on an engine (``engines``: a local process pool or a Ray cluster) into one
folder: ``DIR/runs/<cell>`` (stored runs, readable by ``gradientflow runs``), ``DIR/spec.json`` and
``DIR/results.parquet`` (one row per cell, rewritten atomically each time a cell ends, so a killed
sweep keeps every row it had). Running the same sweep again skips the cells whose run ended
(finished or diverged) and resumes the others from their last checkpoint; a cell that raises, or
whose worker is lost, is recorded as failed with its message and the others go on.

``--out`` is written only when it is missing, empty, or holds a sweep of the same spec (its
``spec.json`` equal to the one this sweep would write). Anything else is refused, before anything
is written, with a one-line ValueError: a file, another spec's sweep, a run folder (config.json),
a folder holding anything else. A refused folder is left byte for byte as it was.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..store import Run, write_atomic, write_json
from . import batched as batching
from . import engines
from .cell import RESULT_FIELDS, result_row
from .spec import Cell, SweepSpec

ENDED = ("finished", "diverged")
MAX_BATCH = 256  # nets trained together at most (memory grows with it)


def _stored(folder: Path) -> dict | None:
    """The row of a cell whose run already ended, from its status.json; None otherwise."""
    if not (folder / "config.json").exists():
        return None
    status = Run(folder).status()
    if status.get("status") not in ENDED:
        return None
    return result_row(status)


def run_sweep(spec: SweepSpec, out: str | Path, *, engine: str = "local", workers: int | None = None,
              address: str | None = None, batched: bool = False, progress: bool = False) -> dict:
    """Every cell of ``spec`` into ``out`` on ``engine`` (``engines.make``); returns the counts and the
    results file's path. With ``batched``, the new cells train in this process as batches of
    same-shaped nets (``batched``); a cell with a stored unfinished run resumes on the engine.
    Nothing is written before every cell's config is valid, ``out`` is found to be this sweep's
    (``_check_out``) and the engine answers."""
    cells = spec.cells()
    _check_out(Path(out), _spec_record(spec))
    if batched:
        for cell in cells:
            why = batching.refusal(cell.config)
            if why is not None:
                raise ValueError(f"--batched: cell {_label(cell)} has {why}")
    runner = engines.make(engine, workers=workers, address=address)
    try:
        return _sweep(cells, spec, Path(out), runner, batched, progress)
    finally:
        runner.close()


SPEC_TMP = re.compile(r"\.spec\.json\..+\.tmp")  # what a kill in the middle of writing spec.json leaves


def _spec_record(spec: SweepSpec) -> dict:
    """What ``spec.json`` holds for ``spec``, as it reads back (JSON's types)."""
    return json.loads(json.dumps({"base": spec.base, "grid": spec.grid, "random": spec.random}, default=str))


def _check_out(out: Path, record: dict) -> None:
    """ValueError (one line) unless ``out`` is missing, empty, or this spec's sweep folder, so that
    a sweep never writes over another sweep, a run or anyone's files."""
    where = f"--out {str(out)!r}"
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{where} is a file, not a folder; give a new folder")
    links = [p for p in (out / "spec.json", out / "results.parquet", out / "runs") if p.is_symlink()]
    if (out / "runs").is_dir() and not (out / "runs").is_symlink():
        links += [p for p in (out / "runs").iterdir() if p.is_symlink()]
    if links:  # a sweep writes, resumes and deletes only inside its own folder (as the run store does)
        raise ValueError(f"{where}: {str(links[0])!r} is a symbolic link; a sweep's files must be its own")
    if (out / "config.json").exists():
        raise ValueError(f"{where} is a run folder (it has config.json), not a sweep's; give a new folder")
    spec_file = out / "spec.json"
    if spec_file.exists():
        try:
            stored = json.loads(spec_file.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{where} has a spec.json that does not read ({type(err).__name__}); "
                             f"give a new folder") from None
        if stored != record:
            raise ValueError(f"{where} holds another sweep (spec differs); give a new folder")
        return
    # spec.json is a sweep's first write: without it, only a kill's leftover of that write is a sweep's
    foreign = sorted(p.name for p in out.iterdir() if not SPEC_TMP.fullmatch(p.name))
    if foreign:
        raise ValueError(f"{where} holds files that are not a sweep's ({foreign[0]!r}, no spec.json); "
                         f"give an empty or new folder")


def _label(cell: Cell) -> str:
    return " ".join(f"{k}={v!r}" for k, v in cell.varied.items())


def _sweep(cells: list[Cell], spec: SweepSpec, out: Path, runner, batched: bool, progress: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    # spec.json first: it marks the folder as this sweep's (``_check_out``)
    write_json(out / "spec.json", _spec_record(spec))
    (out / "runs").mkdir(exist_ok=True)
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

    def ended(name: str, row: dict) -> None:
        rows[name] = row
        _write(out, cells, rows)
        if bar is not None:
            bar.update()

    try:
        if batched:
            fresh = [c for c in todo if not (out / "runs" / c.name).exists()]
            _train_batches(fresh, out / "runs", ended)
            todo = [c for c in todo if c not in fresh]
        runner.map([(c.name, c.config.model_dump(), str((out / "runs" / c.name).absolute())) for c in todo], ended)
    finally:
        if bar is not None:
            bar.close()
    statuses = [rows[c.name]["status"] for c in cells]
    return {"cells": len(cells), "finished": statuses.count("finished"), "diverged": statuses.count("diverged"),
            "failed": statuses.count("failed"), "results": str(out / "results.parquet")}


def _train_batches(cells: list[Cell], runs: Path, ended, size: int = MAX_BATCH) -> None:
    """The cells in batches of at most ``size`` nets that agree on every field but ``batched.PER_NET``;
    a batch that raises records each of its cells as failed."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(batching.batch_key(cell.config), []).append(cell)
    for group in groups.values():
        for start in range(0, len(group), size):
            chunk = group[start:start + size]
            try:
                stored = [Run.create(runs / c.name, c.config.model_dump()) for c in chunk]
                summaries = batching.train([c.config for c in chunk], runs=stored)
                rows = [result_row(s.to_dict()) for s in summaries]
            except Exception as err:  # noqa: BLE001 - a batch's failure is data, the sweep goes on
                rows = [{"status": "failed", "message": f"{type(err).__name__}: {err}"}] * len(chunk)
            for cell, row in zip(chunk, rows):
                ended(cell.name, row)


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
