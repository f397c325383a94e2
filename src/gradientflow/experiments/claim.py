"""What every experiment module hands back: the claims it tests and a computed verdict for each.

An experiment module (one per claim or tight group of claims) defines:

- ``CLAIMS``: the ``Claim`` records it tests (id, the seeds' words as listed in CLAIMS.md, the seed files);
- ``Size``, a subclass of ``claim.Size`` (a frozen, validated pydantic record), and ``QUICK`` and ``FULL``, two
  instances of it (``--quick`` picks the first); a training experiment's size holds a ``TrainConfig`` built
  from the typed parts (data, model, optimiser, loop) and the sweep around it (rates, seeds);
- ``run(size, seed, folder) -> dict``: the measurements, JSON-serialisable (lists, not tensors), obtained
  through the engine, the probes and the theory; ``folder`` is where it may store its training runs;
- ``verdicts(measured) -> dict[id, Verdict]``: pass or fail per claim, computed from the measurements
  against a threshold stated (and justified) in words;
- ``figures(measured) -> dict[stem, Figure]``: the figures the verdicts point at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


class Size(BaseModel):
    """An experiment's size: typed, frozen and validated; each experiment subclasses it with its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Claim:
    """One claim of the seeds (CLAIMS.md)."""

    id: str  # "C7"
    text: str  # the seeds' statement, in English
    source: str  # the seed files that make it: "000, 001"


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict, computed from measured numbers."""

    passed: bool
    threshold: str  # the rule the numbers were held to, and why that rule
    numbers: dict = field(default_factory=dict)  # the key numbers behind the verdict
    figure: str = ""  # stem of the figure that shows it
    why: str = ""  # one sentence: what the numbers say (written from the numbers, not by hand)


def finite(x: float) -> bool:
    """True for a real number that is neither NaN nor infinite."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def rounded(obj, digits: int = 6):
    """``obj`` with every float rounded to ``digits`` significant digits and NaN/inf as None (strict JSON)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj
