"""SQL over stored runs: one read-only DuckDB ``SELECT`` across their metrics and configs."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from .store import METRIC_SCHEMA, Run, _read_part


def query(sql: str, runs: Iterable[Run]) -> pa.Table:
    """Run one SQL ``SELECT`` over ``runs`` with DuckDB. Two tables: ``metrics`` (run, step, epoch,
    split, name, value) and ``runs`` (run, status, every config field).

    Read-only by construction: the runs' metrics are read here (Arrow) and handed to DuckDB, which then
    runs with file access off and its configuration locked, and only a single ``SELECT`` statement is
    accepted, so a query cannot write, ``COPY``, ``ATTACH``, ``INSTALL`` or read a file. A statement of
    another kind, or several, is a ValueError naming what was given."""
    import duckdb

    runs = list(runs)
    con = duckdb.connect()
    statements = con.extract_statements(sql)
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        raise ValueError(f"runs sql runs one SELECT query; given {' + '.join(kinds) or 'no statement'}")
    parts = []
    for r in runs:
        for _, path in r._parts("metrics"):
            part = _read_part(path, METRIC_SCHEMA)
            parts.append(part.add_column(0, "run", pa.array([r.name] * part.num_rows, pa.string())))
    metrics = pa.concat_tables(parts) if parts else METRIC_SCHEMA.insert(0, pa.field("run", pa.string())).empty_table()
    rows = [{"run": r.name, "status": r.status().get("status"), **r.config()} for r in runs]
    con.register("metrics", metrics)
    con.register("runs", pa.Table.from_pylist(rows) if rows else pa.table({"run": pa.array([], pa.string())}))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con.sql(sql).to_arrow_table()
