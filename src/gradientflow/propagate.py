"""Push data through a fresh network and measure every hidden layer (C15-C17), no training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import properties
from .activations import Maxout
from .probes.stats import in_region


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one hidden layer's output h = f(z) over a batch (all units pooled)."""

    index: int  # 1-based hidden-layer number
    mean: float
    std: float
    saturated: float | None  # share of pre-activations z in the activation's saturated region
    zero: float  # share of outputs that are exactly 0


def _hidden_blocks(net: nn.Sequential) -> list[tuple[nn.Module, nn.Module | None]]:
    """(affine map, elementwise activation) pairs; a Maxout layer is its own pair."""
    blocks, modules = [], list(net)
    i = 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, Maxout):
            blocks.append((m, None))
            i += 1
        elif isinstance(m, nn.Linear) and i + 1 < len(modules) and not isinstance(modules[i + 1], nn.Linear):
            blocks.append((m, modules[i + 1]))
            i += 2
        else:  # the linear read-out
            i += 1
    return blocks


@torch.no_grad()
def propagate(net: nn.Sequential, x: Tensor, activation: str) -> tuple[list[LayerStats], list[Tensor]]:
    """Forward ``x`` through the hidden layers of ``net`` (built by ``mlp``), layer by layer.

    Returns the per-layer statistics and the outputs themselves (for histograms).
    The saturated share uses the activation's measured saturated region
    (|f'(z)| < 0.05 max|f'|); it is None for maxout, whose winning piece always
    passes the gradient through unscaled.
    """
    region = None if activation == "maxout" else properties.measure(activation).saturated_region
    stats, outputs = [], []
    h = x
    for index, (affine, act) in enumerate(_hidden_blocks(net), start=1):
        if act is None:
            h, saturated = affine(h), None
        else:
            z = affine(h)
            h = act(z)
            saturated = float(in_region(z, region).float().mean())
        stats.append(LayerStats(index, float(h.mean()), float(h.std()), saturated, float((h == 0).float().mean())))
        outputs.append(h)
    return stats, outputs
