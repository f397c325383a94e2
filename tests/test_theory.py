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


def _arc_cosine(c):
    """E[relu(u1) relu(u2)] / q for unit-variance u with correlation c (Cho & Saul 2009)."""
    return (math.sqrt(max(1 - c * c, 0.0)) + (math.pi - math.acos(c)) * c) / (2 * math.pi)


def test_correlation_map_matches_the_arc_cosine_kernel_for_relu():
    # Gauss-Hermite on a kinked integrand converges as O(1/n): the error halves as n doubles
    from gradientflow import gaussian

    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    for c in (0.0, 0.4, 0.9):
        exact = _arc_cosine(c)
        errors = [abs(float(gaussian.expect_pair(relu, relu, 1.0, c, n=n)) - exact) for n in (32, 64, 128)]
        assert errors[2] < 1.5e-3 and errors[2] < 0.6 * errors[1] < 0.36 * errors[0]


@pytest.mark.parametrize("q", [0.01, 1.0, 50.0])
def test_the_correlation_map_split_at_kinks_is_exact_for_relu(q):
    # theory's c-map splits the integral where u1 and u2 cross the kink: exponential convergence
    for c in (-1.0, -0.6, 0.0, 0.4, 0.9, 0.999, 1.0):
        assert theory.c_map("relu", c, q, 1.0, 0.0) == pytest.approx(_arc_cosine(c), abs=1e-8)
        # Price's theorem: chi_c = sigma_w2 E[phi'(u1) phi'(u2)] = (pi - arccos c) / (2 pi) for ReLU
        assert theory.chi_c("relu", c, q, 1.0) == pytest.approx((math.pi - math.acos(c)) / (2 * math.pi), abs=1e-7)


def _reference_c_star(alpha, scale, q, sigma_w2, sigma_b2):
    """Independent c* for ELU-type units phi(x) = scale (x if x > 0 else alpha (e^x - 1)) (ELU: 1, 1; SELU:
    Klambauer's alpha and lambda). Given z1, u2 ~ N(m, s^2) and E[phi(u2)] has a closed form:
    m Phi(m/s) + s pdf(m/s) + alpha (e^(m + s^2/2) Phi(-m/s - s) - Phi(-m/s)); the outer integral is
    scipy.integrate.quad with the kink declared, the root brentq."""
    from scipy import integrate, optimize, stats

    def phi(x):
        return scale * (x if x > 0 else alpha * math.expm1(x))

    def inner(m, s):
        a = m / s
        return scale * (m * stats.norm.cdf(a) + s * stats.norm.pdf(a)
                        + alpha * (math.exp(m + s * s / 2) * stats.norm.cdf(-a - s) - stats.norm.cdf(-a)))

    root = math.sqrt(q)

    def c_map(c):
        s = root * math.sqrt(1 - c * c)
        pair = integrate.quad(lambda z: phi(root * z) * inner(root * c * z, s) * stats.norm.pdf(z), -12, 12,
                              points=[0.0], epsabs=1e-14, epsrel=1e-13, limit=200)[0]
        return (sigma_w2 * pair + sigma_b2) / q

    return optimize.brentq(lambda c: c_map(c) - c, 0.0, 1 - 1e-6, xtol=1e-13)


@pytest.mark.parametrize("name, sigma_w2, sigma_b2", [("selu", 1.5, 0.1), ("elu", 1.8, 0.2), ("elu", 1.7, 0.0)])
def test_c_star_of_kinked_activations_is_accurate_to_1e_6(name, sigma_w2, sigma_b2):
    from gradientflow.activations import SELU_ALPHA, SELU_LAMBDA

    alpha, scale = (SELU_ALPHA, SELU_LAMBDA) if name == "selu" else (1.0, 1.0)
    point = theory.analyse(name, sigma_w2, sigma_b2)
    assert point.phase == "chaotic"
    reference = _reference_c_star(alpha, scale, point.q_star, sigma_w2, sigma_b2)
    assert point.c_star == pytest.approx(reference, abs=1e-6)
    grid = theory.phase_grid(name, np.array([sigma_w2]), np.array([sigma_b2]))
    assert grid["c_star"][0, 0] == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("name", ["tanh", "elu", "selu", "leaky_relu", "softsign", "gelu"])
def test_the_tabulated_phase_grid_agrees_with_the_exact_point_maps(name):
    w, b = np.linspace(0.1, 4.0, 14), np.linspace(0.0, 0.5, 6)
    grid = theory.phase_grid(name, w, b)
    compared = 0
    for i, sb in enumerate(b):
        for j, sw in enumerate(w):
            p = theory.analyse(name, float(sw), float(sb))
            if p.phase == "unbounded":
                assert np.isinf(grid["q_star"][i, j]) and np.isinf(grid["xi_c"][i, j])
                continue
            assert grid["q_star"][i, j] == pytest.approx(p.q_star, rel=1e-7, abs=1e-12)
            assert grid["chi1"][i, j] == pytest.approx(p.chi1, rel=1e-7)
            if abs(p.chi1 - 1) > 0.02:  # near the critical line c* is ill-conditioned: 1/(1 - chi_c) amplifies
                assert grid["c_star"][i, j] == pytest.approx(p.c_star, abs=1e-6)
                assert grid["xi_c"][i, j] == pytest.approx(p.xi_c, rel=1e-3)
                compared += 1
    assert compared > 20


@pytest.mark.parametrize("name", ["tanh", "relu", "elu", "hardtanh"])
def test_the_phase_grid_has_no_nan_cell(name):
    grid = theory.phase_diagram(name, 4.0, 0.5, 40)
    assert not np.isnan(grid["xi_c"]).any() and not np.isnan(grid["q_star"]).any()
    if name == "relu":  # sigma_w2 > 2: q* grows without bound and xi_c is inf (the homogeneous c-map's slope is 1)
        assert np.isinf(grid["xi_c"][:, grid["sigma_w2"][0] > 2.05]).all()


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
