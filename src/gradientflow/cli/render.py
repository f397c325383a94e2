"""Rendering a command's result: JSON with a stable shape, or a text table for a person."""

from __future__ import annotations

import math

import click


def fmt(v, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; None (an unbounded or missing value) as '-'."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) or math.isnan(v) else ("inf" if v > 0 else "-inf")
    return str(v)


def echo_json(obj, **kwargs) -> None:
    """``obj`` as standard JSON on stdout (``jsontext``: NaN as null, infinities as "inf" and "-inf")."""
    from ..jsontext import dumps

    click.echo(dumps(obj, indent=2, **kwargs))


def table(rows: list[dict], columns: list[str], digits: int = 4) -> None:
    """``rows`` as a text table of ``columns`` (pandas' layout, numbers in ``digits`` significant digits)."""
    import pandas as pd

    frame = pd.DataFrame([{c: fmt(r.get(c), digits) for c in columns} for r in rows], columns=columns)
    click.echo(frame.to_string(index=False))
