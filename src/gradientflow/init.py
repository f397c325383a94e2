"""Weight initialisers, torch style: ``fill_(tensor, *, gain, std, generator)`` in place.

Each initialiser is an ``Initializer`` record: the in-place ``fill_`` (delegating
to ``torch.nn.init`` wherever torch already implements the formula) and the
``variance`` it promises for a weight of shape (fan_out, fan_in), which the
contract test checks against the empirical variance of every entry.

Variances (n_in = fan_in, n_out = fan_out, g = gain):

    zeros            0                                   (C14: every unit the same)
    constant(c)      0 (every entry equals c)            (C14)
    normal(std)      std^2                               (C15: std 0.01 and 1)
    uniform(a)       a^2 / 3, U(-a, a)
    xavier / glorot  g^2 * 2 / (n_in + n_out)  mode "average" (C18; Glorot & Bengio 2010, eq. 12)
                     g^2 / n_in                mode "fan_in"   (C16: Var(w) = 1/N)
                     g^2 / n_out               mode "fan_out"
    he / kaiming     2 / ((1 + a^2) n)         n = n_in or n_out, a = leaky slope (C17; He et al. 2015)
    lecun            1 / n_in                  (LeCun et al. 1998)
    orthogonal       g^2 / max(n_in, n_out)    (Saxe et al. 2014; rows or columns orthonormal)
    lsuv             data-driven: each layer's output variance 1 on a batch (Mishkin & Matas 2016)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .layers import walk

Mode = Literal["fan_in", "fan_out", "average"]


def _fans(tensor: Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise ValueError(f"an initialiser needs a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    receptive = tensor[0][0].numel() if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(fan_in: int, fan_out: int, mode: Mode) -> float:
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    if mode == "average":
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"unknown mode {mode!r}; expected one of: fan_in, fan_out, average")


def zeros_(tensor: Tensor, **_: object) -> Tensor:
    """w = 0 (C14: all units of the layer compute and learn the same thing)."""
    return nn.init.zeros_(tensor)


def constant_(tensor: Tensor, value: float = 0.0, **_: object) -> Tensor:
    """w = value for every entry (C14: symmetric, as bad as zero)."""
    return nn.init.constant_(tensor, value)


def normal_(tensor: Tensor, std: float = 0.01, *, generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ N(0, std^2) (C15 uses std 0.01 and std 1)."""
    return nn.init.normal_(tensor, 0.0, std, generator=generator)


def uniform_(tensor: Tensor, a: float = 0.05, *, generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ U(-a, a), Var(w) = a^2 / 3."""
    return nn.init.uniform_(tensor, -a, a, generator=generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, mode: Mode = "average", *,
                   generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ N(0, g^2 / n) with n = (n_in + n_out)/2, n_in or n_out by ``mode``.

    The average mode is Glorot & Bengio 2010's compromise Var(w) = 2/(n_in + n_out)
    between the forward (n_in Var(w) = 1) and backward (n_out Var(w) = 1)
    conditions (C18); the fan_in mode is the seeds' Var(w) = 1/N (C16).
    """
    if mode == "average":
        return nn.init.xavier_normal_(tensor, gain, generator=generator)
    return nn.init.normal_(tensor, 0.0, gain / math.sqrt(_fan(*_fans(tensor), mode)), generator=generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, mode: Mode = "average", *,
                    generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ U(-b, b), b = g sqrt(3 / n): the same variance as ``xavier_normal_`` (Glorot & Bengio 2010, eq. 16)."""
    if mode == "average":
        return nn.init.xavier_uniform_(tensor, gain, generator=generator)
    bound = gain * math.sqrt(3.0 / _fan(*_fans(tensor), mode))
    return nn.init.uniform_(tensor, -bound, bound, generator=generator)


def he_normal_(tensor: Tensor, a: float = 0.0, mode: Mode = "fan_in", *,
               generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ N(0, 2 / ((1 + a^2) n)), n = n_in or n_out (C17; He et al. 2015, eq. 10 and 14)."""
    if mode == "average":
        std = math.sqrt(2.0 / ((1 + a * a) * _fan(*_fans(tensor), mode)))
        return nn.init.normal_(tensor, 0.0, std, generator=generator)
    return nn.init.kaiming_normal_(tensor, a, mode, "leaky_relu", generator=generator)


def he_uniform_(tensor: Tensor, a: float = 0.0, mode: Mode = "fan_in", *,
                generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ U(-b, b), b = sqrt(6 / ((1 + a^2) n)): the variance of ``he_normal_``."""
    if mode == "average":
        bound = math.sqrt(6.0 / ((1 + a * a) * _fan(*_fans(tensor), mode)))
        return nn.init.uniform_(tensor, -bound, bound, generator=generator)
    return nn.init.kaiming_uniform_(tensor, a, mode, "leaky_relu", generator=generator)


def lecun_normal_(tensor: Tensor, gain: float = 1.0, *, generator: torch.Generator | None = None, **_: object) -> Tensor:
    """w ~ N(0, g^2 / n_in) (LeCun et al. 1998; the fan-in Xavier of C16)."""
    return xavier_normal_(tensor, gain, "fan_in", generator=generator)


def orthogonal_(tensor: Tensor, gain: float = 1.0, *, generator: torch.Generator | None = None, **_: object) -> Tensor:
    """W = g Q with orthonormal rows (or columns); mean w^2 = g^2 / max(n_in, n_out) (Saxe et al. 2014)."""
    return nn.init.orthogonal_(tensor, gain, generator=generator)


@dataclass(frozen=True)
class Scale:
    """The scale parameters an initialiser may read; each reads only its own."""

    gain: float = 1.0  # xavier, xavier_uniform, lecun, orthogonal
    std: float = 0.01  # normal; uniform draws U(-sqrt(3) std, sqrt(3) std), the same variance
    value: float = 0.0  # constant
    a: float = 0.0  # he, he_uniform: negative slope of the leaky ReLU that follows the layer
    mode: Mode | None = None  # xavier: "average" unless given; he: "fan_in" unless given
    bias_std: float = 0.0  # biases ~ N(0, bias_std^2); 0 keeps them at zero (mean-field sigma_b)


@dataclass(frozen=True)
class Initializer:
    """An initialiser: in-place ``fill_`` and the variance it promises for a (fan_in, fan_out) weight."""

    name: str
    fill_: Callable[[Tensor, Scale, torch.Generator | None], Tensor]
    variance: Callable[[int, int, Scale], float]


def _xavier_var(i: int, o: int, s: Scale) -> float:
    return s.gain**2 / _fan(i, o, s.mode or "average")


def _he_var(i: int, o: int, s: Scale) -> float:
    return 2.0 / ((1 + s.a * s.a) * _fan(i, o, s.mode or "fan_in"))


INITIALIZERS: dict[str, Initializer] = {
    i.name: i
    for i in [
        Initializer("zeros", lambda t, s, g: zeros_(t), lambda i, o, s: 0.0),
        Initializer("constant", lambda t, s, g: constant_(t, s.value), lambda i, o, s: 0.0),
        Initializer("normal", lambda t, s, g: normal_(t, s.std, generator=g), lambda i, o, s: s.std**2),
        Initializer("uniform", lambda t, s, g: uniform_(t, math.sqrt(3) * s.std, generator=g),
                    lambda i, o, s: s.std**2),
        Initializer("xavier", lambda t, s, g: xavier_normal_(t, s.gain, s.mode or "average", generator=g),
                    _xavier_var),
        Initializer("xavier_uniform", lambda t, s, g: xavier_uniform_(t, s.gain, s.mode or "average", generator=g),
                    _xavier_var),
        Initializer("he", lambda t, s, g: he_normal_(t, s.a, s.mode or "fan_in", generator=g), _he_var),
        Initializer("he_uniform", lambda t, s, g: he_uniform_(t, s.a, s.mode or "fan_in", generator=g), _he_var),
        Initializer("lecun", lambda t, s, g: lecun_normal_(t, s.gain, generator=g), lambda i, o, s: s.gain**2 / i),
        Initializer("orthogonal", lambda t, s, g: orthogonal_(t, s.gain, generator=g),
                    lambda i, o, s: s.gain**2 / max(i, o)),
        # mean-field theory's own coordinates (Poole et al. 2016): W ~ N(0, sigma_w2 / fan_in), with
        # gain = sqrt(sigma_w2); b ~ N(0, sigma_b2) through bias_std. ``meanfield(w, b)`` is its Scale.
        Initializer("meanfield", lambda t, s, g: xavier_normal_(t, s.gain, "fan_in", generator=g),
                    lambda i, o, s: s.gain**2 / i),
    ]
}
"""Every tensor initialiser by name; ``lsuv`` is data-driven and lives in ``lsuv_``."""

ALIASES = {"glorot": "xavier", "glorot_uniform": "xavier_uniform", "kaiming": "he", "kaiming_uniform": "he_uniform"}
DATA_DRIVEN = ("lsuv",)
NAMES: tuple[str, ...] = tuple(INITIALIZERS) + DATA_DRIVEN + tuple(ALIASES)


def get(name: str) -> Initializer:
    """The initialiser called ``name`` (aliases: glorot, kaiming); a clear ValueError otherwise."""
    key = ALIASES.get(name, name)
    if key in INITIALIZERS:
        return INITIALIZERS[key]
    raise ValueError(f"unknown initialiser {name!r}; expected one of: {', '.join(NAMES)}")


def meanfield_scales(init_name: str, fan_in: int, fan_out: int | None = None,
                     scale: Scale = Scale()) -> tuple[float, float] | None:
    """(sigma_w2, sigma_b2) of an initialiser in mean-field notation, or None where the theory does not apply.

    sigma_w2 = fan_in Var(w) with Var(w) the initialiser's promised variance (table above) and
    sigma_b2 = bias_std^2 (Poole et al. 2016: W_ij ~ N(0, sigma_w2 / fan_in), b_i ~ N(0, sigma_b2)).
    ``fan_out`` defaults to ``fan_in`` (square hidden layers). None for zeros and constant (every
    weight equal: the average over random weights does not describe the network; C14) and for the
    data-driven lsuv.

    Example: ``meanfield_scales("he", 500) == (2.0, 0.0)``; ``meanfield_scales("xavier", 500)`` is (1.0, 0.0).
    """
    if init_name in DATA_DRIVEN or ALIASES.get(init_name, init_name) in ("zeros", "constant"):
        return None
    fan_out = fan_in if fan_out is None else fan_out
    return fan_in * get(init_name).variance(fan_in, fan_out, scale), scale.bias_std ** 2


@torch.no_grad()
def lsuv_(model: nn.Module, x: Tensor, *, tol: float = 0.02, max_iter: int = 10,
          generator: torch.Generator | None = None) -> nn.Module:
    """Layer-sequential unit-variance init (Mishkin & Matas 2016, Algorithm 1), in place.

    Every layer ``layers.walk`` finds (Linear, Conv, Maxout) is first made orthogonal; then, in
    module order, its weight is divided by sqrt(Var(output)) measured on the batch ``x`` until
    |Var(output) - 1| < ``tol`` (at most ``max_iter`` passes). Biases are zeroed.
    """
    layers = walk(model)
    for layer in layers:
        nn.init.orthogonal_(layer.weight, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    for layer in layers:
        seen: list[Tensor] = []
        handle = layer.module.register_forward_hook(lambda m, i, o: seen.append(o))
        try:
            for _ in range(max_iter):
                seen.clear()
                model(x)
                var = float(seen[0].var())
                if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                    break
                layer.weight.div_(math.sqrt(var))
        finally:
            handle.remove()
    return model


@dataclass(frozen=True)
class CriticalInit:
    """Edge-of-chaos initialisation: W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2)."""

    activation: str
    sigma_w2: float
    sigma_b2: float

    def scale(self) -> Scale:
        """The ``Scale`` for ``xavier`` in fan_in mode with gain sqrt(sigma_w2), and the bias std."""
        return meanfield(self.sigma_w2, self.sigma_b2)


def meanfield(sigma_w2: float, sigma_b2: float = 0.0) -> Scale:
    """The ``Scale`` that draws W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2) with ``xavier``
    (Poole et al. 2016's parametrisation): gain sqrt(sigma_w2) in fan_in mode, bias std sqrt(sigma_b2).
    ``meanfield_scales`` is its inverse: ``meanfield_scales("xavier", n, scale=meanfield(w, b)) == (w, b)``."""
    return Scale(gain=math.sqrt(sigma_w2), mode="fan_in", bias_std=math.sqrt(sigma_b2))


def critical(activation: str, sigma_b2: float = 0.0) -> CriticalInit:
    """The critical initialisation of any activation: chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] = 1.

    (Poole et al. 2016; Schoenholz et al. 2017.) Raises ``theory.NoCriticalPoint``
    where none exists. Example: ``critical("tanh").sigma_w2 == 1``; ``critical("relu")`` is He init.
    """
    from .theory import critical_sigma_w2

    return CriticalInit(activation, float(critical_sigma_w2(activation, sigma_b2)), sigma_b2)
