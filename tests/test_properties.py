import math

import numpy as np
import pytest
import torch

from gradientflow import properties
from gradientflow.activations import CATALOG, NAMES

_MC = 400_000


def _samples(seed=0, n=_MC):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", list(CATALOG))
def test_gaussian_moments_agree_with_monte_carlo(name):
    act = CATALOG[name]
    y = act.fn(_samples())
    mean, second, var = properties.gaussian_moments(act)
    se = float(y.std()) / math.sqrt(_MC)
    assert abs(mean - float(y.mean())) < 5 * se + 1e-12
    assert var == pytest.approx(float(y.var()), rel=0.02, abs=1e-9)


@pytest.mark.parametrize("name", list(CATALOG))
def test_saturated_fraction_agrees_with_monte_carlo(name):
    act = CATALOG[name]
    peak, _ = properties.max_derivative(act)
    for s in (1.0, 3.0):
        z = s * _samples(1)
        sampled = float((act.derivative(z).abs() < properties.SATURATION_THRESHOLD * peak).double().mean())
        assert properties.saturated_fraction(act, s) == pytest.approx(sampled, abs=4e-3)


def test_gain_closed_forms():
    assert properties.gain(CATALOG["relu"]) == pytest.approx(math.sqrt(2), rel=1e-12)  # He et al. 2015
    assert properties.gain(CATALOG["identity"]) == pytest.approx(1.0, rel=1e-12)
    assert properties.gain(CATALOG["leaky_relu"]) == pytest.approx(math.sqrt(2 / (1 + 0.01**2)), rel=1e-12)
    assert properties.gain(CATALOG["selu"]) == pytest.approx(1.0, abs=1e-9)


def test_gain_agrees_with_torch_where_torch_derives_it_and_differs_where_it_is_a_convention():
    for name in ("relu", "leaky_relu", "identity"):
        p = properties.measure(name)
        assert p.gain == pytest.approx(p.torch_gain, rel=1e-4)
    tanh = properties.measure("tanh")
    assert tanh.torch_gain == pytest.approx(5 / 3) and tanh.gain == pytest.approx(1.5925, abs=1e-4)


def test_gain_preserves_the_second_moment_through_a_wide_layer():
    """g from quadrature: a 4000-wide layer with W ~ N(0, g^2/n) keeps E[z^2] = 1 (Poole et al. 2016)."""
    g = torch.Generator().manual_seed(3)
    for name in ("tanh", "sigmoid", "gelu"):
        act = CATALOG[name]
        gain = properties.gain(act)
        x = torch.randn(256, 4000, generator=g, dtype=torch.float64)
        w = torch.randn(4000, 4000, generator=g, dtype=torch.float64) * gain / math.sqrt(4000)
        z = act.fn(x) @ w.T
        assert float((z * z).mean()) == pytest.approx(1.0, rel=0.03)


def test_ranges():
    assert properties.output_range(CATALOG["sigmoid"]) == (0.0, 1.0)
    assert properties.output_range(CATALOG["tanh"]) == (-1.0, 1.0)
    assert properties.output_range(CATALOG["relu"]) == (0.0, None)
    assert properties.output_range(CATALOG["leaky_relu"]) == (None, None)
    lo, hi = properties.output_range(CATALOG["elu"])
    assert lo == pytest.approx(-1.0, abs=1e-9) and hi is None
    lo, _ = properties.output_range(CATALOG["gelu"])  # min of x Phi(x), at x ~ -0.7518
    assert lo == pytest.approx(-0.16997, abs=1e-5)


def test_monotonic_and_zero_centred_flags():
    table = {p.name: p for p in properties.table()}
    assert {n for n, p in table.items() if not p.monotonic} == {"gelu", "silu", "mish"}
    assert {n for n, p in table.items() if p.zero_centred} == {"tanh", "selu", "softsign", "hardtanh", "lecun_tanh",
                                                               "identity"}


def test_relu_saturates_half_the_inputs_and_tanh_few_at_unit_scale():
    assert properties.saturated_fraction(CATALOG["relu"], 1.0) == pytest.approx(0.5, abs=1e-12)
    # tanh' < 0.05 for |x| > atanh(sqrt(0.95)): P(|z| > 2.178) at std 1
    edge = math.atanh(math.sqrt(0.95))
    assert properties.saturated_fraction(CATALOG["tanh"], 1.0) == pytest.approx(2 * (1 - _phi(edge)), rel=1e-9)
    assert properties.saturated_fraction(CATALOG["tanh"], 20.0) > 0.9  # C15: large weights saturate


def _phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_maxout_moments_are_those_of_the_max_of_two_gaussians():
    p = properties.maxout_properties(2)
    assert p.mean_at_unit_gaussian == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert p.var_at_unit_gaussian + p.mean_at_unit_gaussian**2 == pytest.approx(1.0, rel=1e-9)  # E[max^2] = 1
    assert p.saturated_fraction == 0.0 and p.monotonic and p.max_derivative == 1.0
    three = properties.maxout_properties(3)
    z = np.random.default_rng(0).standard_normal((_MC, 3)).max(-1)
    assert three.mean_at_unit_gaussian == pytest.approx(z.mean(), abs=5e-3)


def test_table_covers_every_name_and_serialises():
    rows = [p.to_dict() for p in properties.table()]
    assert [r["name"] for r in rows] == list(NAMES)
    for r in rows:
        assert r["gain"] > 0 and 0 <= r["saturated_fraction"] <= 1
