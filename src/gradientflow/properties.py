"""Measured properties of an activation: nothing here is typed in by hand.

Every number comes from evaluating the function and its derivative:

* range: f on a wide grid; a side is unbounded when f keeps growing out to |x| = 1e6;
* mean and variance of f(z), z ~ N(0, 1): Gauss-Hermite quadrature (``gaussian.expect``);
* max |f'| and where it is reached: a dense grid refined by bounded scalar search;
* saturated region {x : |f'(x)| < 0.05 max|f'|} as intervals (grid + brentq), and the
  saturated fraction P(sz in region) for z ~ N(0, 1) from the normal CDF;
* monotonicity: the sign of f' on the grid;
* cost: median ns per element of f and of f with its input gradient, by torch.utils.benchmark (C6);
* variance-preserving gain g with g^2 E[f(z)^2] = 1 (the fixed point of the
  length map q -> g^2 E[f(sqrt(q) z)^2] at q = 1, Poole et al. 2016), by quadrature.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from . import gaussian
from .activations import (_GRID, SATURATION_THRESHOLD, Activation, Maxout, get, max_derivative, output_range,
                          saturated_region)

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


def rows(names: tuple[str, ...] | None = None, *, cost: bool = False, min_run_time: float = 0.2) -> list[dict]:
    """``table`` as dicts, with the C6 timings of ``cost_table`` (ns per element, ratio to ReLU) merged
    into each row when ``cost`` is asked for."""
    out = [p.to_dict() for p in table(names)]
    if cost:
        for row, timing in zip(out, cost_table(tuple(r["name"] for r in out), min_run_time=min_run_time)):
            row.update({k: v for k, v in timing.items() if k != "name"})
    return out


# --- cost (C6): measured time per element ---


def ns_per_element(name: str, numel: int = 1 << 20, *, backward: bool = False, min_run_time: float = 0.2,
                   seed: int = 0) -> float:
    """Median time of f(x) (and, with ``backward``, of f(x) plus its input gradient) per element, in ns.

    ``x`` is float32 from N(0, 1); maxout is timed as max over 2 pieces of ``numel`` inputs each.
    """
    g = torch.Generator().manual_seed(seed)
    pieces = 2 if name == "maxout" else 1
    x = torch.randn(numel, pieces, generator=g) if pieces > 1 else torch.randn(numel, generator=g)
    fn = (lambda t: t.amax(-1)) if name == "maxout" else get(name).fn
    if backward:
        x.requires_grad_(True)
        ones = torch.ones(numel)
        stmt = "torch.autograd.grad(fn(x), x, ones)"
    else:
        stmt = "fn(x)"
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt=stmt, globals={"fn": fn, "x": x, "ones": ones if backward else None, "torch": torch})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e9 / numel


def cost_table(names: tuple[str, ...] | None = None, numel: int = 1 << 20,
               min_run_time: float = 0.2) -> list[dict]:
    """ns per element forward and forward+backward for each activation, and the ratio to ReLU."""
    from .activations import NAMES

    rows = []
    for name in names or NAMES:
        rows.append({"name": name,
                     "forward_ns": ns_per_element(name, numel, min_run_time=min_run_time),
                     "forward_backward_ns": ns_per_element(name, numel, backward=True, min_run_time=min_run_time)})
    relu = next((r for r in rows if r["name"] == "relu"), None) or {
        "forward_ns": ns_per_element("relu", numel, min_run_time=min_run_time),
        "forward_backward_ns": ns_per_element("relu", numel, backward=True, min_run_time=min_run_time)}
    for r in rows:
        r["forward_vs_relu"] = r["forward_ns"] / relu["forward_ns"]
        r["forward_backward_vs_relu"] = r["forward_backward_ns"] / relu["forward_backward_ns"]
    return rows


__all__ = ["Properties", "measure", "table", "gain", "saturated_fraction", "saturated_region",
           "output_range", "max_derivative", "gaussian_moments", "monotonic", "maxout_properties",
           "SATURATION_THRESHOLD", "ns_per_element", "cost_table", "rows"]
