"""Push data through a fresh network and measure every hidden layer (C15-C17), no training.

``propagate`` walks any network built of (affine map, activation) layers, ``study`` builds the
seeds' fresh ``mlp`` and puts the mean-field theory's per-layer predictions beside the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import init, layers, memory, model, theory
from .probes.stats import in_region


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one hidden layer's output h = f(z) over a batch (all units pooled)."""

    index: int  # 1-based hidden-layer number
    mean: float
    std: float
    saturated: float | None  # share of pre-activations z in the activation's saturated region
    zero: float  # share of outputs that are exactly 0


@torch.no_grad()
def propagate(net: nn.Module, x: Tensor) -> tuple[list[LayerStats], list[Tensor]]:
    """Forward ``x`` through the hidden layers of ``net`` (``layers.hidden``, paired by data flow on
    ``x``), layer by layer.

    Returns the per-layer statistics and the outputs themselves (for histograms).
    The saturated share uses the activation's measured saturated region
    (|f'(z)| < 0.05 max|f'|); it is None for maxout, whose winning piece always
    passes the gradient through unscaled.
    """
    stats, outputs = [], []
    h = x
    for index, layer in enumerate(layers.hidden(net, x[:2]), start=1):  # the flow needs a couple of rows
        if layer.activation_module is None:  # maxout: its own nonlinearity
            h, saturated = layer.module(h), None
        else:
            z = layer.module(h)
            h = layer.activation_module(z)
            region = layer.activation.saturated_region() if layer.activation is not None else ()
            saturated = float(in_region(z, region).float().mean())
        stats.append(LayerStats(index, float(h.mean()), float(h.std()), saturated, float((h == 0).float().mean())))
        outputs.append(h)
    return stats, outputs


def predict(activation: str, init_name: str, width: int, depth: int,
            scale: init.Scale = init.Scale()) -> list[theory.LayerPrediction] | None:
    """Mean-field predictions for a fresh ``depth`` x ``width`` net, or None where the theory does not apply.

    sigma_w2, sigma_b2 come from ``init.meanfield_scales`` (square layers); inputs have unit
    variance. Maxout is not elementwise and zeros/constant/LSUV have no mean-field description.
    """
    scales = None if activation == "maxout" else init.meanfield_scales(init_name, width, width, scale)
    if scales is None:
        return None
    return theory.predict_layers(activation, depth, scales[0], scales[1], input_var=1.0)


@dataclass(frozen=True)
class Study:
    """A fresh network's per-layer statistics, its outputs and the theory's predictions (or None)."""

    stats: list[LayerStats]
    outputs: list[Tensor]
    predicted: list[theory.LayerPrediction] | None

    def layers(self) -> list[dict]:
        """One dict per hidden layer: the measured statistics with predicted_mean and predicted_std beside them."""
        p = self.predicted
        return [s.__dict__ | {"predicted_mean": None if p is None else p[k].mean,
                              "predicted_std": None if p is None else p[k].std} for k, s in enumerate(self.stats)]


def study(activation: str, init_name: str, *, depth: int, width: int, batch: int, scale: init.Scale = init.Scale(),
          pieces: int = 2, bias: bool = True, seed: int = 0, max_memory: int | None = None) -> Study:
    """Draw a ``depth`` x ``width`` ``mlp`` and ``batch`` unit-Gaussian inputs from one generator seeded
    with ``seed`` (weights first), propagate them, and predict the same layers from the theory. A study
    whose estimated memory (``memory.propagation``) exceeds ``max_memory`` bytes (default: the
    machine's) is refused with a ValueError before anything is drawn."""
    kept = pieces if activation == "maxout" else 1
    memory.refuse(f"propagating a batch of {batch:,} through {depth} x {width}", memory.propagation(width, depth, batch, kept),
                  max_memory)
    g = torch.Generator().manual_seed(seed)
    net = model.mlp(width, width, depth, activation=activation, init_name=init_name, scale=scale, bias=bias,
                    pieces=pieces, generator=g)
    stats, outputs = propagate(net, torch.randn(batch, width, generator=g))
    return Study(stats, outputs, predict(activation, init_name, width, depth, scale))
