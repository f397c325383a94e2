"""Mean-field theory against closed forms and against wide random networks (Monte Carlo)."""

import math

import numpy as np
import pytest
import torch

from gradientflow import init, theory
from gradientflow.activations import CATALOG


def test_relu_length_map_is_closed_form():
    q = np.array([0.1, 1.0, 7.0])
    np.testing.assert_allclose(theory.q_map("relu", q, 1.7, 0.2), 1.7 * q / 2 + 0.2, rtol=1e-12)
    assert theory.chi1("relu", 3.0, 1.7) == pytest.approx(1.7 / 2, rel=1e-12)


def test_linear_network():
    # q* = sigma_b2 / (1 - sigma_w2), chi_1 = sigma_w2, xi_c = -1/log sigma_w2
    p = theory.analyse("identity", 0.5, 0.1)
    assert p.q_star == pytest.approx(0.2, rel=1e-9) and p.chi1 == pytest.approx(0.5, rel=1e-12)
    assert p.xi_c == pytest.approx(-1 / math.log(0.5), rel=1e-9) and p.phase == "ordered"
    assert theory.analyse("identity", 1.5, 0.1).phase == "unbounded"


def test_critical_points_of_the_analytic_cases():
    assert theory.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, rel=1e-9)
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, rel=1e-6)
    assert theory.critical_sigma_w2("identity", 0.0) == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(theory.NoCriticalPoint, match="relu has no critical point at sigma_b2=0.1"):
        theory.critical_sigma_w2("relu", 0.1)
    assert init.critical("relu").sigma_w2 == pytest.approx(2.0)  # He init is ReLU's critical init


def test_points_on_the_critical_line_have_chi1_one():
    b = np.linspace(0.01, 0.4, 7)
    w = theory.critical_sigma_w2("tanh", b)
    assert np.all(np.diff(w) > 0)
    for wi, bi in zip(w, b):
        q = theory.q_star("tanh", wi, bi)
        assert theory.chi1("tanh", q, wi) == pytest.approx(1.0, abs=1e-6)


def test_q_map_slope_matches_a_finite_difference():
    for name in ("tanh", "relu", "gelu", "elu"):
        q, h = 0.8, 1e-5
        fd = (theory.q_map(name, q + h, 1.3, 0.0) - theory.q_map(name, q - h, 1.3, 0.0)) / (2 * h)
        assert theory.q_map_slope(name, q, 1.3) == pytest.approx(fd, rel=1e-6)


def test_correlation_map_matches_the_arc_cosine_kernel_for_relu():
    # E[relu(u1) relu(u2)] = q / (2 pi) (sqrt(1 - c^2) + (pi - arccos c) c)   (Cho & Saul 2009)
    # Gauss-Hermite on a kinked integrand converges as O(1/n): check the error halves as n doubles
    from gradientflow import gaussian

    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    for c in (0.0, 0.4, 0.9):
        exact = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
        assert theory.c_map("relu", c, 1.0, 1.0, 0.0) == pytest.approx(exact, abs=5e-3)
        errors = [abs(float(gaussian.expect_pair(relu, relu, 1.0, c, n=n)) - exact) for n in (32, 64, 128)]
        assert errors[2] < 1.5e-3 and errors[2] < 0.6 * errors[1] < 0.36 * errors[0]


def _wide_net_q_and_chi(name, sigma_w2, sigma_b2, width=1500, depth=8, seed=0):
    """Monte Carlo: propagate through a wide random net; measure q at the last layer and the gradient factor."""
    g = torch.Generator().manual_seed(seed)
    act = CATALOG[name]
    h = torch.randn(4, width, generator=g, dtype=torch.float64)
    for _ in range(depth):
        w = torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(sigma_w2 / width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * math.sqrt(sigma_b2)
        z = h @ w.T + b
        h = act.fn(z)
    q = float((z * z).mean())
    chi = float((act.derivative(z) ** 2).mean()) * sigma_w2  # chi_1 at the measured z, with the next layer's W
    return q, chi


@pytest.mark.parametrize("name,w,b", [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.1), ("relu", 1.5, 0.3), ("gelu", 2.0, 0.1),
                                      ("sigmoid", 4.0, 0.0)])
def test_length_map_and_chi1_agree_with_a_wide_network(name, w, b):
    """The layer-8 q of the iterated length map (and its chi_1) against a 1500-wide random net.

    Where the map contracts slowly (gelu here) finite-width noise accumulates over depth, so 8 layers.
    """
    q_mc, chi_mc = _wide_net_q_and_chi(name, w, b)
    q = theory.predict_layers(name, 8, w, b, input_var=1.0)[-1].q
    assert q == pytest.approx(q_mc, rel=0.05)
    assert float(theory.chi1(name, q, w)) == pytest.approx(chi_mc, rel=0.05)


def test_q_star_is_the_limit_of_the_length_map():
    for name, w, b in [("tanh", 1.5, 0.05), ("gelu", 2.0, 0.1), ("relu", 1.5, 0.3), ("sigmoid", 4.0, 0.0)]:
        q = theory.predict_layers(name, 400, w, b)[-1].q
        assert float(theory.q_star(name, w, b)) == pytest.approx(q, rel=1e-6)


def test_predicted_std_agrees_with_propagate_for_c15_to_c17():
    from gradientflow import mlp, propagate
    from gradientflow.init import Scale

    cases = [("tanh", "normal", Scale(std=1.0), 500.0), ("tanh", "xavier", Scale(), 1.0),
             ("relu", "xavier", Scale(), 1.0), ("relu", "he", Scale(), 2.0)]
    for name, init_name, scale, sigma_w2 in cases:
        g = torch.Generator().manual_seed(0)
        net = mlp(500, 500, 10, activation=name, init_name=init_name, scale=scale, generator=g)
        stats, _ = propagate(net, torch.randn(1000, 500, generator=g))
        predicted = theory.predict_layers(name, 10, sigma_w2)
        for s, p in zip(stats, predicted):
            # one weight draw per layer: its realised gain drifts by ~sqrt(2/500) a layer at width 500
            assert s.std == pytest.approx(p.std, rel=0.2), (name, init_name, s.index)


def test_gradient_factor_is_chi1_power_at_the_fixed_point():
    # linear net: every chi equals sigma_w2, so the norm factor at layer l is sigma_w2^((L - l) / 2)
    pred = theory.predict_layers("identity", 6, 0.8)
    for p in pred:
        assert p.grad_norm_factor == pytest.approx(0.8 ** ((6 - p.index) / 2), rel=1e-9)


def test_phase_grid_marks_ordered_and_chaotic_sides():
    grid = theory.phase_grid("tanh", np.array([0.5, 3.0]), np.array([0.05]))
    assert grid["chi1"][0, 0] < 1 < grid["chi1"][0, 1]
    assert np.all(grid["xi_c"] > 0)


def test_quadrature_of_the_theory_is_converged():
    from gradientflow import gaussian

    act = CATALOG["tanh"]
    for q in (0.01, 1.0, 100.0, 1000.0):
        coarse = theory.chi1("tanh", q, 1.0)
        fine = gaussian.expect(lambda x: act.numpy_derivative(x) ** 2, q, kinks=theory._breaks(act), n=400)
        assert coarse == pytest.approx(fine, rel=1e-8)
