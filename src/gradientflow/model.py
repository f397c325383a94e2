"""Fully-connected networks built from the catalog: ``mlp(...) -> nn.Sequential``."""

from __future__ import annotations

import torch
from torch import nn

from . import activations, init, layers
from .init import Scale


def _negative_slope(activation: str) -> float:
    """The slope He init must know for a leaky unit (He et al. 2015, eq. 15): f'(-1)."""
    if activation in ("leaky_relu", "prelu"):
        return float(activations.get(activation).derivative(torch.tensor(-1.0)))
    return 0.0


def mlp(
    in_features: int,
    width: int,
    depth: int,
    out_features: int | None = None,
    *,
    activation: str = "tanh",
    init_name: str = "xavier",
    scale: Scale = Scale(),
    bias: bool = True,
    pieces: int = 2,
    batch_norm: bool = False,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
    lsuv_batch: torch.Tensor | None = None,
) -> nn.Sequential:
    """A network of ``depth`` hidden layers of ``width`` units and an optional linear read-out.

    Hidden layer l computes h_l = f(W_l h_{l-1} + b_l) with f from the activation
    catalog, or a ``Maxout`` layer (``activation="maxout"``, ``pieces`` linear
    maps per unit, C9). ``depth=0`` gives a single Linear map (logistic
    regression when trained with cross-entropy). ``batch_norm`` normalises each
    hidden layer's pre-activations over the batch, between the linear map and f
    (Ioffe & Szegedy 2015, section 3.2); ``dropout`` zeroes each hidden unit's
    output with that probability while training, scaling the rest by 1/(1 - p)
    (Srivastava et al. 2014; torch's inverted dropout). Weights are drawn by the
    initialiser ``init_name`` with ``scale`` (He init reads the leaky slope of
    leaky_relu/prelu itself unless ``scale.a`` is set); biases start at 0, or
    N(0, scale.bias_std^2) when that is set.
    ``init_name="lsuv"`` runs LSUV on ``lsuv_batch`` (default: 512 unit-Gaussian
    rows drawn from ``generator``).

    Example:
        >>> net = mlp(784, 500, 10, 10, activation="relu", init_name="he")
        >>> len(net)
        21
    """
    for label, value, low in (("in_features", in_features, 1), ("width", width, 1), ("depth", depth, 0),
                              ("pieces", pieces, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if depth == 0 and out_features is None:
        raise ValueError("depth=0 needs out_features: the network would be empty")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if batch_norm and activation == "maxout":
        raise ValueError("batch_norm needs a linear map before the activation; maxout is its own layer")
    layers: list[nn.Module] = []
    prev = in_features
    for _ in range(depth):
        if activation == "maxout":
            layers.append(activations.Maxout(prev, width, pieces, bias=bias))
        else:
            layers.append(nn.Linear(prev, width, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(activations.get(activation).module(width))
        if dropout:
            layers.append(nn.Dropout(dropout))
        prev = width
    if out_features is not None:
        layers.append(nn.Linear(prev, out_features, bias=bias))
    net = nn.Sequential(*layers)
    initialize_(net, init_name, scale=scale, activation=activation, generator=generator, lsuv_batch=lsuv_batch)
    return net


@torch.no_grad()
def initialize_(
    net: nn.Module,
    init_name: str,
    *,
    scale: Scale = Scale(),
    activation: str = "tanh",
    generator: torch.Generator | None = None,
    lsuv_batch: torch.Tensor | None = None,
) -> nn.Module:
    """Re-draw the weight of every layer of ``net`` (``layers.walk``) with ``init_name`` and the biases
    (0 or N(0, bias_std^2)), in place."""
    walked = layers.walk(net)
    if init_name == "lsuv":
        if lsuv_batch is None:
            lsuv_batch = torch.randn(512, walked[0].weight.shape[1], generator=generator)
        return init.lsuv_(net, lsuv_batch, generator=generator)
    initializer = init.get(init_name)
    if scale.a == 0.0 and initializer.name.startswith("he"):
        scale = Scale(**{**scale.__dict__, "a": _negative_slope(activation)})
    for layer in walked:
        initializer.fill_(layer.weight, scale, generator)
        if layer.bias is not None:
            init.normal_(layer.bias, scale.bias_std, generator=generator) if scale.bias_std > 0 else layer.bias.zero_()
    return net
