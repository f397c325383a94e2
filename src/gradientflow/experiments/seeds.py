"""Statistics over seeds: what a verdict decided near the edge of stability reads instead of one run.

A ``Spread`` keeps every seed's value beside the median and the 10-90 % band, so the report can
draw the dots and the verdict can name its statistic. A seed without a value (its run diverged, or
the quantity is undefined for it) is kept as None and counted in ``missing``, never silently
dropped; the experiments count diverged runs beside it as an outcome of their own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Per-seed values (None where there is none) and their median and 10 % / 90 % quantiles."""

    values: list[float | None]
    median: float
    q10: float
    q90: float
    missing: int

    def to_dict(self) -> dict:
        return asdict(self)


def spread(values: list[float | None]) -> Spread:
    """The ``Spread`` of per-seed values; None or a non-finite value counts as missing.

    The quantiles are numpy's linear ones over the finite values; NaN when every seed diverged.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Spread(list(values), math.nan, math.nan, math.nan, len(values))
    q10, median, q90 = (float(v) for v in np.quantile(finite, [0.1, 0.5, 0.9]))
    return Spread([None if v is None or not math.isfinite(v) else float(v) for v in values], median, q10, q90,
                  len(values) - len(finite))


def median_diverged_last(values: list[float | None]) -> float:
    """The median with a missing value (None, as a diverged run or a never-converged count is stored) counted as
    infinite: a diverged run sorts last, and a majority of them makes the median infinite."""
    return float(np.median([math.inf if v is None else v for v in values]))


def majority(flags: list[bool]) -> bool:
    """More than half of the seeds: the statistic for a yes/no outcome per seed."""
    return sum(bool(f) for f in flags) * 2 > len(flags)
