"""A sweep's spec: ``base`` (any ``TrainConfig`` fields), ``grid`` (a list of values per field, the
cells are their product) and ``random`` (``n`` draws of some fields from ``seed``, crossed with the
grid). Every cell's config is validated before anything is trained or written.

    base: {data: mnist1d, activation: tanh, init: meanfield, sigma_b2: 0.05, epochs: 2}
    grid: {sigma_w2: [1.0, 2.0, 4.0], depth: [10, 20], seed: [0, 1]}
    random: {n: 4, seed: 0, fields: {lr: {loguniform: [1.0e-3, 1.0e-1]}}}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random as _random
from dataclasses import dataclass

from pydantic import ValidationError

from ..config import TrainConfig, describe_error

MAX_CELLS = 10_000
KEYS = ("base", "grid", "random")
DRAWS = ("uniform", "loguniform", "choice", "int")


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: the fields it varies, its validated config and its folder's name."""

    varied: dict
    config: TrainConfig

    @property
    def name(self) -> str:
        """``cell-`` and a hash of the varied values: the same cell keeps its folder when the spec grows."""
        key = json.dumps(self.varied, sort_keys=True, default=str)
        return "cell-" + hashlib.sha1(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SweepSpec:
    base: dict
    grid: dict
    random: dict

    @classmethod
    def parse(cls, spec) -> "SweepSpec":
        """From a loaded YAML/TOML mapping; ValueError (one line) for anything malformed."""
        if not isinstance(spec, dict):
            raise ValueError(f"a sweep spec is a mapping with {', '.join(KEYS)}; got {type(spec).__name__}")
        unknown = [k for k in spec if k not in KEYS]
        if unknown:
            raise ValueError(f"unknown spec key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
        base, grid, rand = spec.get("base") or {}, spec.get("grid") or {}, spec.get("random") or {}
        for key, value in (("base", base), ("grid", grid), ("random", rand)):
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be a mapping, got {type(value).__name__}")
        fields = set(TrainConfig.model_fields)
        for where, names in (("base", base), ("grid", grid), ("random", rand.get("fields") or {})):
            for name in names:
                if name not in fields:
                    raise ValueError(f"unknown field {name!r} in {where} (a training config field is expected)")
        for name, values in grid.items():
            if not isinstance(values, list):
                raise ValueError(f"grid field {name!r} must be a list of values, got {values!r}")
            if not values:
                raise ValueError(f"grid field {name!r} has no values")
        if rand:
            extra = set(rand) - {"n", "seed", "fields"}
            if extra:
                raise ValueError(f"unknown key {sorted(extra)[0]!r} in random; allowed: n, seed, fields")
            n = rand.get("n")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CELLS:
                raise ValueError(f"random n={n!r} must be an integer from 1 to {MAX_CELLS}")
            if not isinstance(rand.get("fields"), dict) or not rand["fields"]:
                raise ValueError("random needs fields: {field: {uniform|loguniform|int: [lo, hi]} or {choice: [...]}}")
            for name, how in rand["fields"].items():
                _check_draw(name, how)
        if not grid and not rand:
            raise ValueError("the sweep has nothing to vary: give a grid (lists of values) or random draws")
        return cls(base, grid, rand)

    def cells(self) -> list[Cell]:
        """Every cell, its config validated; ValueError naming the first cell that does not validate."""
        names = list(self.grid)
        combos = [dict(zip(names, values)) for values in itertools.product(*self.grid.values())] or [{}]
        draws = _draws(self.random) if self.random else [{}]
        count = len(combos) * len(draws)
        if count > MAX_CELLS:
            raise ValueError(f"the sweep has {count:,} cells; at most {MAX_CELLS:,}")
        out = []
        for combo in combos:
            for draw in draws:
                varied = {**combo, **draw}
                try:
                    out.append(Cell(varied, TrainConfig(**{**self.base, **varied})))
                except ValidationError as err:
                    raise ValueError(f"cell {_show(varied)}: {describe_error(err)}") from None
        if len({c.name for c in out}) != len(out):
            raise ValueError("the spec repeats a cell (the same values twice in a grid list)")
        return out


def _check_draw(name: str, how) -> None:
    if not isinstance(how, dict) or len(how) != 1 or next(iter(how)) not in DRAWS:
        raise ValueError(f"random field {name!r} must be one of {{{'|'.join(DRAWS)}: ...}}, got {how!r}")
    kind, arg = next(iter(how.items()))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"random field {name!r}: choice needs a non-empty list")
        return
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              and math.isfinite(v) for v in arg) and arg[0] < arg[1]):
        raise ValueError(f"random field {name!r}: {kind} needs [lo, hi] with finite lo < hi, got {arg!r}")
    if kind == "loguniform" and arg[0] <= 0:
        raise ValueError(f"random field {name!r}: loguniform needs lo > 0, got {arg[0]!r}")


def _draws(rand: dict) -> list[dict]:
    """``n`` draws of the random fields from Python's Mersenne Twister seeded with ``seed`` (0)."""
    rng = _random.Random(rand.get("seed", 0))
    out = []
    for _ in range(rand["n"]):
        draw = {}
        for name, how in rand["fields"].items():
            kind, arg = next(iter(how.items()))
            if kind == "choice":
                draw[name] = rng.choice(arg)
            elif kind == "int":
                draw[name] = rng.randint(int(arg[0]), int(arg[1]))
            elif kind == "uniform":
                draw[name] = rng.uniform(arg[0], arg[1])
            else:
                draw[name] = math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1])))
        out.append(draw)
    return out


def _show(varied: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in varied.items()) or "(the base)"
