"""SQL over stored runs: one read-only, bounded DuckDB ``SELECT`` across their metrics and configs."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable

import pyarrow as pa

from . import memory
from .store import METRIC_SCHEMA, Run, read_part

DEFAULT_TIMEOUT = 10.0  # seconds
TIMEOUT_RANGE = (0.1, 3600.0)
DEFAULT_MAX_MEMORY = "1GB"
MIN_MEMORY = 16 * 2**20  # below this DuckDB cannot run even a small query
DEFAULT_LIMIT = 10_000  # rows
LIMIT_RANGE = (1, 1_000_000)
RESERVED = ("run", "status")  # the runs table's own columns; a config field of that name is renamed
TRUNCATED = b"gradientflow.truncated"  # schema metadata key of a result cut at ``limit`` rows

def query(sql: str, runs: Iterable[Run], *, timeout: float = DEFAULT_TIMEOUT,
          max_memory: str = DEFAULT_MAX_MEMORY, limit: int = DEFAULT_LIMIT) -> pa.Table:
    """Run one SQL ``SELECT`` over ``runs`` with DuckDB. Two tables: ``metrics`` (run, step, epoch,
    split, name, value) and ``runs`` (run, status, every config field).

    Config fields in ``runs``: a field named ``run`` or ``status`` (in any case) is renamed
    ``config_run`` / ``config_status``, so a config cannot pose as another run; a field whose values
    have different types across runs (``lr`` a number in one config.json and a string in another)
    becomes text for every run (strings as they are, other values as JSON), and a nested value (a
    mapping or a list) is JSON text, so one odd config does not break every query over the folder.

    Read-only by construction: the runs' metrics are read here (Arrow) and handed to DuckDB, which then
    runs with file access off, no temporary directory (DuckDB would otherwise still read and write
    ``./.tmp``) and its configuration locked, and only a single ``SELECT`` statement is accepted, so a
    query cannot write, ``COPY``, ``ATTACH``, ``INSTALL`` or read a file.

    Bounded: the query is interrupted after ``timeout`` seconds; DuckDB's own memory (aggregates,
    joins, sorts, the result) is limited to ``max_memory`` (e.g. ``"512MB"``, ``"2GiB"``) and never
    spills to disk; at most ``limit`` rows come back, and a cut result says so (``truncated``).

    ValueError, in one line, for: a statement of another kind, or several; a ``timeout``,
    ``max_memory`` or ``limit`` out of range; a query that runs past ``timeout`` or needs more
    memory than ``max_memory``. DuckDB's own errors (a bad column, file access refused) are
    ``duckdb.Error``."""
    import duckdb

    timeout = checked_timeout(timeout)
    memory_bytes = checked_memory(max_memory)
    limit = checked_limit(limit)
    con = duckdb.connect(config=_bounded_config(memory_bytes))
    try:
        _check_one_select(con, sql)
        runs = list(runs)
        con.register("metrics", _metrics_table(runs))
        con.register("runs", runs_table(runs))
        con.execute("SET enable_external_access = false")  # after registering: then no file, URL or Python object
        con.execute("SET lock_configuration = true")  # last: the query cannot SET any of this back
        return _run_bounded(con, sql, timeout, max_memory, limit)
    finally:
        con.close()


def truncated(table: pa.Table) -> bool:
    """Whether ``query`` cut this result at its ``limit`` (more rows matched)."""
    return bool(table.schema.metadata and TRUNCATED in table.schema.metadata)


def checked_timeout(seconds) -> float:
    """``seconds`` as a float, or ValueError naming the allowed range (NaN and infinity refused)."""
    low, high = TIMEOUT_RANGE
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"--timeout {seconds!r} is out of range; give seconds from {low:g} to {high:g}")
    return value


def checked_memory(size) -> int:
    """A size such as ``"1GB"``, ``"512MB"`` or ``"2GiB"`` in bytes (``memory.parse``), or ValueError
    naming what is allowed: from 16MB up to the machine's memory."""
    value = memory.parse(size, "--max-memory", least=MIN_MEMORY)
    if value > memory.machine():
        raise ValueError(f"--max-memory {size!r} is more than this machine's {memory.readable(memory.machine())}")
    return value


def checked_limit(rows) -> int:
    """``rows`` as an int within LIMIT_RANGE, or ValueError naming the range."""
    low, high = LIMIT_RANGE
    if isinstance(rows, bool) or not isinstance(rows, int) or not low <= rows <= high:
        raise ValueError(f"--limit {rows!r} is out of range; give a number of rows from {low} to {high}")
    return rows


def runs_table(runs: list[Run]) -> pa.Table:
    """The ``runs`` table: run, status, then every config field (in order of first appearance), one row
    per run. Reserved names are renamed, mixed-type and nested fields become text (see ``query``)."""
    configs = [_renamed(r.config()) for r in runs]
    columns = {"run": pa.array([r.name for r in runs], pa.string()),
               "status": pa.array([r.status().get("status") for r in runs], pa.string())}
    fields = list(dict.fromkeys(k for c in configs for k in c))
    for field in fields:
        columns[field] = _column([c.get(field) for c in configs])
    return pa.table(columns)


def _renamed(config: dict) -> dict:
    """``config`` with fields that clash with the runs table's own columns (RESERVED, in any case, as
    DuckDB matches names) renamed ``config_<field>`` (prefixed again while that too is taken)."""
    out: dict = {}
    for key, value in config.items():
        name = key
        # prefixed until free: not reserved, not already used, and not another field of this config
        while name.lower() in RESERVED or name in out or (name != key and name in config):
            name = f"config_{name}"
        out[name] = value
    return out


def _column(values: list) -> pa.Array:
    """One config field across runs: Arrow's own type when the values share one, else text."""
    if not any(isinstance(v, (dict, list)) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # mixed types (1 and "1", true and 2) or an int past 64 bits: text below
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                    pa.string())


def _metrics_table(runs: list[Run]) -> pa.Table:
    """Every run's metric parts in one Arrow table, with the run's name as the first column."""
    parts = []
    for r in runs:
        for _, path in r._parts("metrics"):
            part = read_part(path, METRIC_SCHEMA)
            parts.append(part.add_column(0, "run", pa.array([r.name] * part.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else METRIC_SCHEMA.insert(0, pa.field("run", pa.string())).empty_table()


def _bounded_config(memory_bytes: int) -> dict:
    """DuckDB's settings at connect time. ``temp_directory`` '' matters twice: DuckDB spills to it
    (``./.tmp`` by default), and it lets queries read it even with external access off."""
    return {"temp_directory": "", "max_temp_directory_size": "0B",  # nothing spills to disk, nothing read from it
            "memory_limit": f"{memory_bytes}B",
            "threads": min(4, os.cpu_count() or 1),  # fewer threads, fewer per-thread buffers within the limit
            "autoinstall_known_extensions": False, "autoload_known_extensions": False}


def _check_one_select(con, sql: str) -> None:
    """ValueError unless ``sql`` is exactly one SELECT statement."""
    kinds = [s.type.name for s in con.extract_statements(sql)]
    if kinds != ["SELECT"]:
        raise ValueError(f"runs sql runs one SELECT query; given {' + '.join(kinds) or 'no statement'}")


def _run_bounded(con, sql: str, timeout: float, max_memory: str, limit: int) -> pa.Table:
    """The query's first ``limit`` rows, interrupted after ``timeout`` seconds. DuckDB stops as soon as
    it has ``limit + 1`` rows (the extra one only tells whether more matched)."""
    import duckdb

    timer = threading.Timer(timeout, con.interrupt)  # interrupt is DuckDB's thread-safe way to stop a query
    timer.daemon = True
    timer.start()
    try:
        table = con.sql(sql).limit(limit + 1).to_arrow_table()
    except duckdb.InterruptException:
        raise ValueError(f"query stopped after {timeout:g} s (--timeout); narrow it or raise --timeout") from None
    except duckdb.OutOfMemoryException:
        raise ValueError(f"query needs more than {max_memory} of memory (--max-memory); "
                         "narrow it or raise --max-memory") from None
    finally:
        timer.cancel()
    if table.num_rows <= limit:
        return table
    return table.slice(0, limit).replace_schema_metadata({**(table.schema.metadata or {}), TRUNCATED: str(limit)})
