"""C15-C17: the 10 x 500 study of the seeds, measured."""

import pytest
import torch

from gradientflow import mlp, propagate
from gradientflow.init import Scale


def _run(activation, init_name, scale=Scale(), depth=10, width=500, batch=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = mlp(width, width, depth, activation=activation, init_name=init_name, scale=scale, generator=g)
    stats, _ = propagate(net, torch.randn(batch, width, generator=g))
    return stats


def test_tiny_gaussian_collapses_tanh_towards_zero():
    stats = _run("tanh", "normal", Scale(std=0.01))
    stds = [s.std for s in stats]
    assert all(b < a for a, b in zip(stds, stds[1:]))
    assert stds[-1] < 1e-5  # each layer multiplies the std by about 0.01 * sqrt(500) = 0.22


def test_unit_gaussian_saturates_tanh():
    stats = _run("tanh", "normal", Scale(std=1.0))
    assert all(s.saturated > 0.9 for s in stats)


def test_xavier_holds_tanh_and_shrinks_relu_while_he_holds_relu():
    tanh = _run("tanh", "xavier")
    relu_x = _run("relu", "xavier")
    relu_he = _run("relu", "he")
    assert tanh[-1].std / tanh[0].std > 0.3  # C16: roughly constant (slow ordered-phase decay)
    assert relu_x[-1].std / relu_x[0].std < 0.1  # C16: halves the variance per layer, (1/2)^(9/2) = 0.044
    assert 0.5 < relu_he[-1].std / relu_he[0].std < 2  # C17


def test_relu_output_zero_share_is_half():
    stats = _run("relu", "he", depth=3)
    assert all(s.zero == pytest.approx(0.5, abs=0.03) for s in stats)


def test_maxout_has_no_saturation_entry():
    assert all(s.saturated is None for s in _run("maxout", "xavier", depth=2, width=50, batch=100))
