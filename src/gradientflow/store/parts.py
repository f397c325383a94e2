"""A run's Parquet parts: their names, their schemas, and reading them with every damage named."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import first_line
from .errors import StoreError

METRIC_SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.int32()), ("split", pa.string()),
                           ("name", pa.string()), ("value", pa.float64())])
PART = re.compile(r"^(?P<kind>.+)-(?P<step>\d{9})\.(parquet|pt)$")


def load_converters() -> None:
    """Pay pyarrow's one-off cost of its first conversion of Python values now: it imports pandas
    then (0.1-0.3 s), which would otherwise stall training at the run's first metric part. Called
    when a run is opened for writing, before training starts."""
    pa.array([0])


def columns(schema: pa.Schema) -> str:
    """A schema's columns, ``name: type``, for a message."""
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def same_schema(path: Path, found: pa.Schema, schema: pa.Schema) -> None:
    """StoreError naming the part when its columns are not ``schema``'s (a part written by something
    else parses, and Arrow would read its missing columns as nulls)."""
    if not found.equals(schema, check_metadata=False):
        raise StoreError(f"{str(path)!r} is damaged: its columns are ({columns(found)}), not ({columns(schema)})")


def footer_schema(path: Path) -> pa.Schema:
    """A part's schema, from its footer alone; StoreError naming the file when it does not read."""
    try:
        return pq.read_schema(path)
    except Exception as err:  # noqa: BLE001 - Arrow raises several types for a bad file
        raise StoreError(f"{str(path)!r} is damaged: {first_line(err)}") from None


def read_part(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """One Parquet part, read once and checked against ``schema`` when given; StoreError naming the
    file when it is truncated, corrupt or of another schema."""
    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - Arrow raises several types for a bad file
        raise StoreError(f"{str(path)!r} is damaged: {first_line(err)}") from None
    if schema is not None:
        same_schema(path, table.schema, schema)
    return table


def table_schema(path: Path, schema: pa.Schema) -> pa.Schema:
    """A table's first part's schema, which must have an integer ``step`` column (what thinning and
    the readers sort and select by)."""
    if "step" not in schema.names or not pa.types.is_integer(schema.field("step").type):
        raise StoreError(f"{str(path)!r} is damaged: no integer step column ({columns(schema)})")
    return schema


def same_columns(path: Path, found: pa.Schema, first: pa.Schema) -> None:
    """A later part of a table has the first part's columns, of types that combine (a column of
    nulls in one part takes the other part's type); StoreError naming the part otherwise."""
    try:
        if found.names != first.names:
            raise ValueError
        pa.unify_schemas([first, found])
    except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError):
        raise StoreError(f"{str(path)!r} is damaged: its columns are ({columns(found)}), "
                         f"not those of the table's first part ({columns(first)})") from None
