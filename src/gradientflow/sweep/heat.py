"""A sweep's results as a grid over two varied fields, and mean-field theory's trainable depth beside it.

``heat`` averages a result column over the cells that share (x, y) (the seeds, and any other varied
field); a cell that did not finish or diverged gives no value. ``trainable_depth`` is Schoenholz et
al. (2017)'s bound: a network of depth L trains when L <~ 6 xi_c, with xi_c the correlation depth
scale at (sigma_w2, sigma_b2) (``theory.analyse``).
"""

from __future__ import annotations

import math

import numpy as np

NUMBERS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "steps")


def heat(rows: list[dict], x: str, y: str, value: str) -> dict:
    """{"x": sorted x values, "y": sorted y values, "value": (len y, len x) means (NaN where no
    cell gave one), "cells": counts}; ValueError naming what is allowed."""
    if not rows:
        raise ValueError("the sweep has no cells")
    varied = [k for k in rows[0] if k not in ("cell", "status", "message", *NUMBERS)]
    for axis, field in (("--x", x), ("--y", y)):
        if field not in varied:
            raise ValueError(f"{axis} {field!r} is not a field this sweep varies; it varies: {', '.join(varied)}")
    if x == y:
        raise ValueError(f"--x and --y are both {x!r}; give two fields")
    if value not in NUMBERS:
        raise ValueError(f"--value {value!r} is not a result; allowed: {', '.join(NUMBERS)}")
    xs, ys = sorted({r[x] for r in rows}), sorted({r[y] for r in rows})
    sums, counts = np.zeros((len(ys), len(xs))), np.zeros((len(ys), len(xs)), dtype=int)
    for r in rows:
        v = r.get(value)
        if r["status"] == "finished" and v is not None and math.isfinite(v):
            i, j = ys.index(r[y]), xs.index(r[x])
            sums[i, j] += v
            counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return {"x": xs, "y": ys, "value": means, "cells": counts}


def trainable_depth(activation: str, sigma_w2: np.ndarray, sigma_b2: float) -> np.ndarray:
    """6 xi_c at each sigma_w2 (Schoenholz et al. 2017, the trainable depth); inf at the critical point."""
    from ..theory import analyse

    out = []
    for w in sigma_w2:
        point = analyse(activation, float(w), sigma_b2)
        out.append(point.max_trainable_depth if point.max_trainable_depth is not None else np.nan)
    return np.asarray(out, dtype=float)


def theory_overlay(out, grid: dict, x: str, y: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(sigma_w2, 6 xi_c, label) across the grid's sigma_w2 range when the sweep in ``out`` is drawn as
    sigma_w2 x depth under the meanfield init with one activation and one sigma_b2; None otherwise
    (other axes, another init, those fields varied, or no ``spec.json``)."""
    import json
    from pathlib import Path

    from ..config import TrainConfig

    path = Path(out) / "spec.json"
    if (x, y) != ("sigma_w2", "depth") or not path.is_file():
        return None
    spec = json.loads(path.read_text())
    varied = {*spec["grid"], *(spec["random"].get("fields") or {})}
    base = TrainConfig(**{**spec["base"], "sigma_w2": min(grid["x"]), "depth": min(grid["y"])})
    if base.init != "meanfield" or {"activation", "sigma_b2"} & varied:
        return None
    w = np.linspace(min(grid["x"]), max(grid["x"]), 200)
    sigma_b2 = base.sigma_b2 or 0.0
    return w, trainable_depth(base.activation, w, sigma_b2), f"6 xi_c ({base.activation}, sigma_b2 = {sigma_b2:g})"
