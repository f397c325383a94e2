"""The read side of a run (``Run.metrics``, ``table``, ``final``, ``epochs``, ``series``): its parts
read back and checked, and the views of its metric rows."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .parts import METRIC_SCHEMA, read_part, same_columns, table_schema


def metrics(paths: list[Path]) -> pa.Table:
    """The metric parts at ``paths`` (in step order), each checked against METRIC_SCHEMA, as one table."""
    parts = [read_part(p, METRIC_SCHEMA) for p in paths]
    return pa.concat_tables(parts) if parts else METRIC_SCHEMA.empty_table()


def table(paths: list[Path]) -> pa.Table | None:
    """The parts of one table at ``paths`` (in step order) as one table; None when there are none."""
    parts = [(p, read_part(p)) for p in paths]
    if not parts:
        return None
    first = table_schema(parts[0][0], parts[0][1].schema)
    for p, t in parts[1:]:
        same_columns(p, t.schema, first)
    return pa.concat_tables([t for _, t in parts], promote_options="default")


def final(name: str, status: dict) -> dict:
    """Run ``name``'s status and its last epoch-level numbers, from its ``status``."""
    row = {"run": name, **{k: status.get(k) for k in ("status", "steps", "test_accuracy", "test_loss",
                                                        "train_loss", "seconds")}}
    r2 = status.get("test_r2")
    return {**row, "test_r2": r2} if isinstance(r2, (int, float)) and math.isfinite(r2) else row  # a regression run


def epochs(rows: pa.Table) -> list[dict]:
    """The metric ``rows``, one row per finished epoch (1-based): its last step and the train and
    test loss and accuracy, and the test R² of a regression run."""
    long = rows.to_pandas()
    long = long[long["split"].isin(["train_epoch", "test"])]
    columns = ["train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    if long.empty:
        return []
    if (long["name"] == "r2").any():
        columns.append("test_r2")
    long = long.assign(column=long["split"].str.replace("_epoch", "") + "_" + long["name"])
    wide = long.pivot_table(index="epoch", columns="column", values="value", aggfunc="max")
    wide = wide.reindex(columns=columns).astype(object).where(wide.notna(), None)
    steps = long.groupby("epoch")["step"].max()
    return [{"epoch": int(e) + 1, "step": int(steps[e]), **wide.loc[e].to_dict()} for e in wide.index]


def series(rows: pa.Table, name: str, split: str = "train") -> tuple[list[int], list[float]]:
    """(steps, values) of one metric among the metric ``rows``."""
    t = rows.filter((pc.field("name") == name) & (pc.field("split") == split))
    return t["step"].to_pylist(), t["value"].to_pylist()
