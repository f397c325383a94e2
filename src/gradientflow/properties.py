"""Measured properties of an activation: nothing here is typed in by hand.

Every number comes from evaluating the function and its derivative:

* range: f on a wide grid; a side is unbounded when f keeps growing out to |x| = 1e6;
* mean and variance of f(z), z ~ N(0, 1): Gauss-Hermite quadrature (``gaussian.expect``);
* max |f'| and where it is reached: a dense grid refined by bounded scalar search;
* saturated region {x : |f'(x)| < 0.05 max|f'|} as intervals (grid + brentq), and the
  saturated fraction P(sz in region) for z ~ N(0, 1) from the normal CDF;
* monotonicity: the sign of f' on the grid;
* variance-preserving gain g with g^2 E[f(z)^2] = 1 (the fixed point of the
  length map q -> g^2 E[f(sqrt(q) z)^2] at q = 1, Poole et al. 2016), by quadrature.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import brentq, minimize_scalar

from . import gaussian
from .activations import Activation, Maxout, get

SATURATION_THRESHOLD = 0.05
"""A unit is saturated where |f'(x)| < 0.05 max|f'| (its local gradient is under 5% of the best)."""

_GRID = np.linspace(-60.0, 60.0, 240_001)  # step 5e-4, contains 0 and +-1 exactly
_FAR = 1e6


@dataclass(frozen=True)
class Properties:
    """The measured properties of one activation (``None`` in ``range`` = unbounded)."""

    name: str
    formula: str
    range: tuple[float | None, float | None]
    mean_at_unit_gaussian: float
    var_at_unit_gaussian: float
    zero_centred: bool
    max_derivative: float
    max_derivative_at: tuple[float | None, float | None]
    saturated_region: tuple[tuple[float | None, float | None], ...]
    saturated_fraction: float
    monotonic: bool
    gain: float
    torch_gain: float | None
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def _bound(f, side: float, grid_extreme: float) -> float | None:
    """None when f still grows (10x from |x| = 1e5 to 1e6) on this side, else the grid extreme."""
    near, far = (abs(float(v)) for v in f(np.array([side * _FAR / 10, side * _FAR])))
    return None if far > 5 * near and far > 1.0 else grid_extreme


def output_range(act: Activation) -> tuple[float | None, float | None]:
    """(inf f, sup f) measured on a grid and out to |x| = 1e6 (None: unbounded)."""
    xs = np.concatenate([_GRID, -np.logspace(1, 6, 200), np.logspace(1, 6, 200)])
    ys = act.numpy(xs)
    lo, _ = _refine(act.numpy, xs, ys, minimum=True)
    hi, _ = _refine(act.numpy, xs, ys, minimum=False)
    below = _bound(act.numpy, -1.0, lo)
    above = _bound(act.numpy, +1.0, hi)
    return below, above


def _refine(f, xs: np.ndarray, ys: np.ndarray, *, minimum: bool) -> tuple[float, float]:
    """(extreme value, where) after polishing the grid extreme with a bounded scalar search."""
    i = int(np.argmin(ys) if minimum else np.argmax(ys))
    best, at = float(ys[i]), float(xs[i])
    if abs(xs[i]) >= 59:  # reached at the edge: a limit at infinity, not an interior extreme
        return best, at
    sign = 1.0 if minimum else -1.0
    res = minimize_scalar(lambda t: sign * float(f(np.array([t]))[0]),
                          bounds=(xs[i] - 1e-3, xs[i] + 1e-3), method="bounded",
                          options={"xatol": 1e-12})
    value = sign * float(res.fun)
    better = value < best if minimum else value > best
    return (value, float(res.x)) if better else (best, at)


def max_derivative(act: Activation) -> tuple[float, tuple[float | None, float | None]]:
    """max |f'(x)| and the interval [lo, hi] of x where it is reached (None: open to infinity).

    An isolated maximum gives lo == hi (the polished argmax); a plateau (ReLU's
    x > 0) gives its extent on the grid.
    """
    d = np.abs(act.numpy_derivative(_GRID))
    peak, at = _refine(lambda x: np.abs(act.numpy_derivative(x)), _GRID, d, minimum=False)
    near = np.flatnonzero(d >= peak * (1 - 1e-9))
    if near.size <= 1:
        return peak, (at, at)
    lo, hi = float(_GRID[near[0]]), float(_GRID[near[-1]])
    step = float(_GRID[1] - _GRID[0])
    lo, hi = (next((k for k in act.kinks if abs(k - v) <= step), v) for v in (lo, hi))  # snap to a kink
    return peak, (None if lo <= _GRID[0] else lo, None if hi >= _GRID[-1] else hi)


def saturated_region(act: Activation, threshold: float = SATURATION_THRESHOLD) -> tuple[tuple[float | None, float | None], ...]:
    """Intervals of x where |f'(x)| < threshold * max|f'| (None: open to infinity)."""
    peak, _ = max_derivative(act)
    h = lambda x: np.abs(act.numpy_derivative(np.atleast_1d(x))) - threshold * peak  # noqa: E731
    inside = h(_GRID) < 0
    if not inside.any():
        return ()
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    cuts = [float(brentq(lambda t: float(h(t)[0]), _GRID[i], _GRID[i + 1], xtol=1e-12)) for i in edges]
    bounds: list[float | None] = ([None] if inside[0] else []) + cuts + ([None] if inside[-1] else [])
    return tuple((bounds[k], bounds[k + 1]) for k in range(0, len(bounds), 2))


def dead_region(act: Activation) -> tuple[tuple[float | None, float | None], ...]:
    """Intervals of x where f'(x) = 0 exactly: a unit whose input stays there gets no gradient at all
    (a dead ReLU, C7). Boundaries sit at the activation's kinks; () for activations whose slope is
    never exactly zero (sigmoid, tanh, leaky ReLU, ...)."""
    inside = act.numpy_derivative(_GRID) == 0
    if not inside.any():
        return ()
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    kinks = np.asarray(act.kinks, dtype=float)

    def cut(i: int) -> float:
        near = kinks[(kinks >= _GRID[i]) & (kinks <= _GRID[i + 1])] if len(kinks) else kinks
        return float(near[0]) if len(near) else float((_GRID[i] + _GRID[i + 1]) / 2)

    bounds: list[float | None] = ([None] if inside[0] else []) + [cut(i) for i in edges] + ([None] if inside[-1] else [])
    pairs = [(bounds[k], bounds[k + 1]) for k in range(0, len(bounds), 2)]
    # zero by construction (bounded by kinks), not by float underflow far out in a smooth tail
    return tuple(p for p in pairs if all(b is None or b in act.kinks for b in p))


def saturated_fraction(act: Activation, std: float = 1.0, threshold: float = SATURATION_THRESHOLD) -> float:
    """P(|f'(s z)| < threshold max|f'|), z ~ N(0, 1): the share of saturated units at input std s.

    Computed exactly from the saturated intervals [a, b]: sum Phi(b/s) - Phi(a/s).
    """
    total = 0.0
    for a, b in saturated_region(act, threshold):
        lo = -math.inf if a is None else a / std
        hi = math.inf if b is None else b / std
        total += float(gaussian.normal_cdf(hi) - gaussian.normal_cdf(lo))
    return total


def gaussian_moments(act: Activation, q: float = 1.0) -> tuple[float, float, float]:
    """(E f, E f^2, Var f) for f(sqrt(q) z), z ~ N(0, 1), by quadrature with a convergence check."""
    m1 = float(gaussian.expect(act.numpy, q, kinks=act.kinks, check=True))
    m2 = float(gaussian.expect(lambda x: act.numpy(x) ** 2, q, kinks=act.kinks, check=True))
    return m1, m2, m2 - m1 * m1


def gain(act: Activation) -> float:
    """Variance-preserving gain g: g^2 E[f(z)^2] = 1 for z ~ N(0, 1).

    With W ~ N(0, g^2 / fan_in) and unit-variance inputs, the pre-activations of
    the next layer keep variance 1 (the length map's fixed point q* = 1;
    Poole et al. 2016, eq. 3). For ReLU this gives sqrt(2) (He et al. 2015).
    Unlike ``torch.nn.init.calculate_gain``, nothing is a convention: torch's
    tanh gain 5/3 and sigmoid gain 1 are chosen values, its SELU gain 3/4 is
    tuned for self-normalising nets, and it has no entry for most activations.
    """
    return 1.0 / math.sqrt(gaussian_moments(act)[1])


_TORCH_GAIN_NAMES = {"identity": "linear", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "selu": "selu"}


def torch_gain(act: Activation) -> float | None:
    """torch.nn.init.calculate_gain for the activations it knows, else None."""
    if act.name == "leaky_relu":
        return torch.nn.init.calculate_gain("leaky_relu", 0.01)
    name = _TORCH_GAIN_NAMES.get(act.name)
    return None if name is None else float(torch.nn.init.calculate_gain(name))


def monotonic(act: Activation) -> bool:
    """True when f' >= 0 everywhere on the grid (non-decreasing)."""
    return bool(np.all(act.numpy_derivative(_GRID) >= -1e-12))


@lru_cache(maxsize=None)
def measure(name: str) -> Properties:
    """All properties of the activation ``name`` (``maxout`` included), measured."""
    if name == "maxout":
        return maxout_properties(2)
    act = get(name)
    mean, second, var = gaussian_moments(act)
    peak, where = max_derivative(act)
    return Properties(
        name=act.name,
        formula=act.formula,
        range=output_range(act),
        mean_at_unit_gaussian=mean,
        var_at_unit_gaussian=var,
        zero_centred=abs(mean) < 1e-3,
        max_derivative=peak,
        max_derivative_at=where,
        saturated_region=saturated_region(act),
        saturated_fraction=saturated_fraction(act, 1.0),
        monotonic=monotonic(act),
        gain=1.0 / math.sqrt(second),
        torch_gain=torch_gain(act),
        source=act.source,
    )


def maxout_properties(pieces: int = 2, samples: int = 100_000, seed: int = 0) -> Properties:
    """Properties of a maxout unit h = max_k z_k over ``pieces`` iid N(0, 1) pre-activations (C9).

    Moments use the density of the maximum of k iid normals, k phi(x) Phi(x)^(k-1):
    E[g(h)] = E_z[g(z) k Phi(z)^(k-1)], by quadrature. Derivatives, saturation
    and monotonicity are measured by autograd through a real ``Maxout`` layer
    on ``samples`` Gaussian inputs.
    """
    weight = lambda x: pieces * gaussian.normal_cdf(x) ** (pieces - 1)  # noqa: E731
    mean = float(gaussian.expect(lambda x: x * weight(x), check=True))
    second = float(gaussian.expect(lambda x: x * x * weight(x), check=True))

    layer = Maxout(1, 1, pieces)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, pieces, generator=g, requires_grad=True)
    h = z.amax(-1)
    (grad,) = torch.autograd.grad(h.sum(), z)
    with torch.no_grad():  # an all-ones line: h(t) = t shows both sides are unbounded
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
        far = layer(torch.tensor([[-_FAR], [_FAR]]))
    unbounded = bool(far[0, 0] < -0.1 * _FAR and far[1, 0] > 0.1 * _FAR)
    peak = float(grad.max())
    return Properties(
        name="maxout",
        formula=f"max_k (w_k.x + b_k), k = {pieces}",
        range=(None, None) if unbounded else (float(h.min()), float(h.max())),
        mean_at_unit_gaussian=mean,
        var_at_unit_gaussian=second - mean * mean,
        zero_centred=abs(mean) < 1e-3,
        max_derivative=peak,
        max_derivative_at=(None, None),
        saturated_region=(),
        saturated_fraction=float((grad.max(-1).values < SATURATION_THRESHOLD * peak).float().mean()),
        monotonic=bool((grad >= 0).all()),
        gain=1.0 / math.sqrt(second),
        torch_gain=None,
        source="C9; Goodfellow et al. 2013",
    )


def table(names: tuple[str, ...] | None = None) -> list[Properties]:
    """Measured properties for ``names`` (default: the whole catalog and maxout)."""
    from .activations import NAMES

    return [measure(n) for n in (names or NAMES)]


__all__ = ["Properties", "measure", "table", "gain", "saturated_fraction", "saturated_region",
           "output_range", "max_derivative", "gaussian_moments", "monotonic", "maxout_properties",
           "SATURATION_THRESHOLD"]
