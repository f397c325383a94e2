"""The activation catalog: each function with its closed-form derivative and its source.

An ``Activation`` is a frozen record: the torch function ``fn``, its derivative
``derivative`` written out in closed form (tests prove it equals autograd,
kinks included), the ``nn.Module`` that puts it in a network, and the points
where it is not smooth (``kinks``, used by the quadrature in ``gaussian``).
At a kink the derivative follows torch's autograd convention, so the closed
form and autograd agree everywhere.

Maxout is not elementwise (a unit takes the max over k pre-activations and owns
k times the weights), so it is a layer, ``Maxout``; its measured properties
come from ``properties.maxout_properties``.

Where a unit saturates (|f'| under 5% of its peak) and where it is dead (f' = 0 exactly) are
measured from the record itself (``saturated_region``, ``dead_region``, ``output_range``; cached
per record), so the probes and the property table read the same intervals.

Use ``get(name)`` to look an activation up; ``CATALOG`` holds the defaults;
``leaky_relu(alpha)``, ``prelu(alpha, per_unit)`` and ``elu(alpha)`` build
variants.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

TensorFn = Callable[[Tensor], Tensor]

# Klambauer et al. 2017, "Self-Normalizing Neural Networks", eq. (14).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946
# LeCun et al. 1998, "Efficient BackProp", section 4.4.
LECUN_A, LECUN_B = 1.7159, 2.0 / 3.0


@dataclass(frozen=True)
class Activation:
    """One activation function: value, closed-form derivative, module and source."""

    name: str
    fn: TensorFn
    derivative: TensorFn
    module: Callable[[int], nn.Module]  # width -> module (width matters for per-unit PReLU)
    formula: str
    source: str
    kinks: tuple[float, ...] = ()

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """f on a float64 NumPy array (for quadrature and theory)."""
        return self.fn(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()

    def numpy_derivative(self, x: np.ndarray) -> np.ndarray:
        """f' on a float64 NumPy array."""
        return self.derivative(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()

    def saturated_region(self) -> tuple[tuple[float | None, float | None], ...]:
        """Intervals where |f'| < 5% of max|f'| (``saturated_region`` below; measured once per record)."""
        return saturated_region(self)

    def dead_region(self) -> tuple[tuple[float | None, float | None], ...]:
        """Intervals where f' = 0 exactly (``dead_region`` below)."""
        return dead_region(self)

    def output_range(self) -> tuple[float | None, float | None]:
        """(inf f, sup f), None where unbounded (``output_range`` below)."""
        return output_range(self)


def _leaky_derivative(alpha: float) -> TensorFn:
    # torch takes the left branch at 0: d/dx leaky_relu(0) = alpha.
    return lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, alpha))


def leaky_relu(alpha: float = 0.01) -> Activation:
    """Leaky ReLU, f(x) = max(alpha x, x) for 0 <= alpha < 1 (C8; Maas et al. 2013).

    f'(x) = 1 for x > 0, alpha otherwise. ``leaky_relu(0)`` is ReLU.
    """
    return Activation(
        name="leaky_relu" if alpha == 0.01 else f"leaky_relu({alpha:g})",
        fn=lambda x: F.leaky_relu(x, alpha),
        derivative=_leaky_derivative(alpha),
        module=lambda width: nn.LeakyReLU(alpha),
        formula=f"max({alpha:g}x, x)",
        source="C8; Maas, Hannun & Ng 2013",
        kinks=(0.0,),
    )


def prelu(alpha: float = 0.25, per_unit: bool = True) -> Activation:
    """PReLU, f(x) = max(a x, x) with a learned slope a (C8; He et al. 2015).

    The record's ``fn`` uses the initial slope ``alpha`` (torch's default 0.25);
    ``module(width)`` learns one slope per unit (``per_unit``) or one shared.
    """
    return Activation(
        name="prelu",
        fn=lambda x: F.leaky_relu(x, alpha),
        derivative=_leaky_derivative(alpha),
        module=lambda width: nn.PReLU(width if per_unit else 1, init=alpha),
        formula=f"max(ax, x), a learned (init {alpha:g})",
        source="C8; He, Zhang, Ren & Sun 2015",
        kinks=(0.0,),
    )


def elu(alpha: float = 1.0) -> Activation:
    """ELU, f(x) = x for x > 0, alpha (e^x - 1) otherwise (Clevert et al. 2016).

    f'(x) = 1 for x > 0, alpha e^x otherwise (torch takes the left branch at 0).
    """
    return Activation(
        name="elu" if alpha == 1.0 else f"elu({alpha:g})",
        fn=lambda x: F.elu(x, alpha),
        derivative=lambda x: torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0))),
        module=lambda width: nn.ELU(alpha),
        formula="x if x > 0 else e^x - 1" if alpha == 1.0 else f"x if x > 0 else {alpha:g}(e^x - 1)",
        source="Clevert, Unterthiner & Hochreiter 2016",
        kinks=(0.0,),  # f'' jumps at 0 even when alpha = 1
    )


def relu6() -> Activation:
    """ReLU6, f(x) = min(max(0, x), 6) (Krizhevsky 2010; MobileNetV2, Sandler et al. 2018).

    f'(x) = 1 for 0 < x < 6, else 0 (torch's convention at both kinks): dead on both sides.
    Not in ``CATALOG`` (the probes know it in users' models; the experiments do not use it).
    """
    return Activation("relu6", F.relu6, lambda x: ((x > 0) & (x < 6)).to(x.dtype), lambda width: nn.ReLU6(),
                      "min(max(0, x), 6)", "Krizhevsky 2010; Sandler et al. 2018", kinks=(0.0, 6.0))


def hardsigmoid() -> Activation:
    """Hard sigmoid, f(x) = relu6(x + 3) / 6 (MobileNetV3, Howard et al. 2019).

    f'(x) = 1/6 for -3 < x < 3, else 0 (torch's backward uses 1/6 rounded to float32, so does this).
    Not in ``CATALOG``, like ``relu6``.
    """
    sixth = float(torch.tensor(1 / 6, dtype=torch.float32))
    return Activation("hardsigmoid", F.hardsigmoid, lambda x: ((x > -3) & (x < 3)).to(x.dtype) * sixth,
                      lambda width: nn.Hardsigmoid(), "relu6(x + 3) / 6", "Howard et al. 2019", kinks=(-3.0, 3.0))


def hardswish() -> Activation:
    """Hard swish, f(x) = x relu6(x + 3) / 6 (MobileNetV3, Howard et al. 2019).

    f'(x) = 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3, 1 for x >= 3 (torch's branches and arithmetic).
    Not in ``CATALOG``, like ``relu6``.
    """
    return Activation("hardswish", F.hardswish,
                      lambda x: torch.where(x <= -3, torch.zeros_like(x), torch.where(x < 3, x / 3 + 0.5, torch.ones_like(x))),
                      lambda width: nn.Hardswish(), "x relu6(x + 3) / 6", "Howard et al. 2019", kinks=(-3.0, 3.0))


def _sigmoid_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _gelu_derivative(x: Tensor) -> Tensor:
    # d/dx [x Phi(x)] = Phi(x) + x phi(x)
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def _silu_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _softplus_derivative(x: Tensor) -> Tensor:
    # torch's softplus is linear above its threshold (20), so its slope is exactly 1 there.
    return torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))


def _mish_derivative(x: Tensor) -> Tensor:
    # d/dx [x tanh(sp(x))] = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)
    t = torch.tanh(F.softplus(x))
    return t + x * (1 - t * t) * torch.sigmoid(x)


class LecunTanh(nn.Module):
    """1.7159 tanh(2x/3) (LeCun et al. 1998): f(+-1) = +-1 and max gain near the origin."""

    def forward(self, x: Tensor) -> Tensor:
        return LECUN_A * torch.tanh(LECUN_B * x)


def _same(module: type[nn.Module]) -> Callable[[int], nn.Module]:
    return lambda width: module()


_BASE = [
    Activation(
        "sigmoid", torch.sigmoid, _sigmoid_derivative, _same(nn.Sigmoid),
        "1 / (1 + e^-x)", "C1"),
    Activation(
        "tanh", torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, _same(nn.Tanh),
        "(e^x - e^-x) / (e^x + e^-x) = 2 sigmoid(2x) - 1", "C5"),
    Activation(
        "relu", torch.relu, lambda x: (x > 0).to(x.dtype), _same(nn.ReLU),
        "max(0, x)", "C7; Nair & Hinton 2010", kinks=(0.0,)),
    leaky_relu(0.01),
    prelu(0.25),
    elu(1.0),
    Activation(
        "selu", F.selu,
        lambda x: SELU_LAMBDA * torch.where(x > 0, torch.ones_like(x), SELU_ALPHA * torch.exp(x.clamp(max=0))),
        _same(nn.SELU), "lambda (x if x > 0 else alpha (e^x - 1))",
        "Klambauer et al. 2017", kinks=(0.0,)),
    Activation(
        "gelu", F.gelu, _gelu_derivative, _same(nn.GELU),
        "x Phi(x)", "Hendrycks & Gimpel 2016"),
    Activation(
        "silu", F.silu, _silu_derivative, _same(nn.SiLU),
        "x sigmoid(x)", "Elfwing et al. 2018; Ramachandran et al. 2017"),
    Activation(
        "softplus", F.softplus, _softplus_derivative, _same(nn.Softplus),
        "log(1 + e^x)", "Dugas et al. 2001"),
    Activation(
        "softsign", F.softsign, lambda x: 1 / (1 + x.abs()) ** 2, _same(nn.Softsign),
        "x / (1 + |x|)", "Glorot & Bengio 2010", kinks=(0.0,)),
    Activation(
        "hardtanh", F.hardtanh, lambda x: ((x > -1) & (x < 1)).to(x.dtype), _same(nn.Hardtanh),
        "clip(x, -1, 1)", "Collobert 2004", kinks=(-1.0, 1.0)),
    Activation(
        "lecun_tanh", lambda x: LECUN_A * torch.tanh(LECUN_B * x),
        lambda x: LECUN_A * LECUN_B * (1 - torch.tanh(LECUN_B * x) ** 2), _same(LecunTanh),
        "1.7159 tanh(2x/3)", "LeCun, Bottou, Orr & Mueller 1998"),
    Activation(
        "mish", F.mish, _mish_derivative, _same(nn.Mish),
        "x tanh(softplus(x))", "Misra 2019"),
    Activation(
        "identity", lambda x: x, torch.ones_like, _same(nn.Identity),
        "x", "the linear network"),
]

CATALOG: dict[str, Activation] = {a.name: a for a in _BASE}
"""Every elementwise activation by name, with default parameters."""

LAYER_ACTIVATIONS = ("maxout",)
"""Activations that are layers rather than elementwise functions."""

NAMES: tuple[str, ...] = tuple(CATALOG) + LAYER_ACTIVATIONS


def get(name: str) -> Activation:
    """The elementwise activation called ``name``; a clear ValueError otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        hint = " (maxout is a layer: use gradientflow.Maxout or mlp(activation='maxout'))" if name == "maxout" else ""
        raise ValueError(f"unknown activation {name!r}; expected one of: {', '.join(NAMES)}{hint}") from None


class Maxout(nn.Module):
    """Maxout layer, h_j = max_k (W_k x + b_k)_j over ``pieces`` linear maps (C9; Goodfellow et al. 2013).

    It owns ``pieces`` times the weights of a Linear layer of the same width.
    ReLU is the special case of two pieces with the second fixed at zero,
    Leaky ReLU of pieces (W, b) and (alpha W, alpha b).

    The pieces are stored interleaved in one ``nn.Linear(in, out * pieces)``:
    row ``j * pieces + k`` is piece ``k`` of unit ``j``.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, bias: bool = True):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        z = self.linear(x)
        return z.unflatten(-1, (self.out_features, self.pieces)).amax(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"

# --- measured regions: where a unit saturates or is dead (read by the probes and the property table) ---

SATURATION_THRESHOLD = 0.05
"""A unit is saturated where |f'(x)| < 0.05 max|f'| (its local gradient is under 5% of the best)."""

_GRID = np.linspace(-60.0, 60.0, 240_001)  # step 5e-4, contains 0 and +-1 exactly
_FAR = 1e6


def _bound(f, side: float, grid_extreme: float) -> float | None:
    """None when f still grows (10x from |x| = 1e5 to 1e6) on this side, else the grid extreme."""
    near, far = (abs(float(v)) for v in f(np.array([side * _FAR / 10, side * _FAR])))
    return None if far > 5 * near and far > 1.0 else grid_extreme


@functools.lru_cache(maxsize=64)
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
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda t: sign * float(f(np.array([t]))[0]),
                          bounds=(xs[i] - 1e-3, xs[i] + 1e-3), method="bounded",
                          options={"xatol": 1e-12})
    value = sign * float(res.fun)
    better = value < best if minimum else value > best
    return (value, float(res.x)) if better else (best, at)


@functools.lru_cache(maxsize=64)
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


@functools.lru_cache(maxsize=64)
def saturated_region(act: Activation, threshold: float = SATURATION_THRESHOLD) -> tuple[tuple[float | None, float | None], ...]:
    """Intervals of x where |f'(x)| < threshold * max|f'| (None: open to infinity)."""
    peak, _ = max_derivative(act)
    h = lambda x: np.abs(act.numpy_derivative(np.atleast_1d(x))) - threshold * peak  # noqa: E731
    inside = h(_GRID) < 0
    if not inside.any():
        return ()
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    from scipy.optimize import brentq

    cuts = [float(brentq(lambda t: float(h(t)[0]), _GRID[i], _GRID[i + 1], xtol=1e-12)) for i in edges]
    bounds: list[float | None] = ([None] if inside[0] else []) + cuts + ([None] if inside[-1] else [])
    return tuple((bounds[k], bounds[k + 1]) for k in range(0, len(bounds), 2))


@functools.lru_cache(maxsize=64)
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
