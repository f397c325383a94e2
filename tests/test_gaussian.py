import math

import numpy as np
import pytest
from scipy import integrate, stats

from gradientflow import gaussian


def _quad(f, q):
    """Independent reference: adaptive quadrature of f(x) N(x; 0, q) on the real line."""
    s = math.sqrt(q)
    return integrate.quad(lambda x: f(x) * stats.norm.pdf(x, scale=s), -12 * s, 12 * s,
                          points=[-1.0, 0.0, 1.0], limit=200)[0]


@pytest.mark.parametrize("q", [1e-4, 0.3, 1.0, 7.0, 100.0])
def test_second_moment_is_q(q):
    assert gaussian.expect(lambda x: x * x, q) == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize("q", [0.1, 1.0, 9.0])
def test_relu_moments_closed_form(q):
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    assert gaussian.expect(relu, q, kinks=(0.0,)) == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-12)
    assert gaussian.expect(lambda x: relu(x) ** 2, q, kinks=(0.0,)) == pytest.approx(q / 2, rel=1e-12)


@pytest.mark.parametrize("q", [0.05, 1.0, 4.0, 50.0])
def test_kinks_off_zero_match_adaptive_quadrature(q):
    hardtanh_sq = lambda x: np.clip(x, -1.0, 1.0) ** 2  # noqa: E731
    got = gaussian.expect(hardtanh_sq, q, kinks=(-1.0, 1.0), check=True)
    assert got == pytest.approx(_quad(lambda x: min(max(x, -1.0), 1.0) ** 2, q), rel=1e-9)


def test_vectorised_over_q_matches_scalar_calls():
    qs = np.array([[0.5, 1.0], [2.0, 8.0]])
    f = lambda x: np.tanh(x) ** 2  # noqa: E731
    grid = gaussian.expect(f, qs, check=True)
    assert grid.shape == (2, 2)
    for q, v in zip(qs.ravel(), grid.ravel()):
        assert v == pytest.approx(_quad(lambda x: math.tanh(x) ** 2, q), rel=1e-9)


def test_convergence_check_catches_an_undeclared_kink():
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    with pytest.raises(gaussian.QuadratureError):
        gaussian.expect(relu, 1.0, n=10, check=True, rtol=1e-10)


def test_rejects_negative_or_nan_variance():
    with pytest.raises(ValueError):
        gaussian.expect(np.abs, -1.0)
    with pytest.raises(ValueError):
        gaussian.expect(np.abs, float("nan"))


def test_pair_rule_split_at_kinks_converges_exponentially():
    # ReLU's arc-cosine kernel (Cho & Saul 2009): the split rule gains orders of magnitude per doubling
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    cs = np.array([-1.0, -0.5, 0.0, 0.7, 0.99, 1.0])
    exact = (np.sqrt(1 - cs * cs) + (np.pi - np.arccos(cs)) * cs) / (2 * np.pi)
    errors = [np.abs(gaussian.expect_pair(relu, relu, 1.0, cs, n=n, kinks=(0.0,)) - exact).max() for n in (6, 12)]
    assert errors[1] < 1e-9 and errors[1] < 1e-3 * errors[0]


def test_log_q_table_matches_direct_quadrature_and_extrapolates_as_a_power_law():
    relu_sq = lambda x: np.maximum(x, 0.0) ** 2  # noqa: E731
    table = gaussian.LogQTable(relu_sq, (0.0,))
    qs = np.array([1e-40, 1e-20, 3e-3, 0.7, 42.0, 1e8, 1e14])
    assert table(qs) == pytest.approx(qs / 2, rel=1e-9)  # E[relu(sqrt(q) z)^2] = q / 2, beyond the range too
    tanh_sq = lambda x: np.tanh(x) ** 2  # noqa: E731
    smooth = gaussian.LogQTable(tanh_sq, (-4.0, -1.0, -0.25, 0.0, 0.25, 1.0, 4.0))  # tanh's scale, cut as theory does
    for q in (1e-4, 0.3, 7.0, 900.0):
        assert smooth(q) == pytest.approx(_quad(lambda x: math.tanh(x) ** 2, q), rel=1e-8)


def test_pair_table_interpolates_the_correlation_integral():
    elu = lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))  # noqa: E731
    table = gaussian.PairTable(elu, elu, (0.0,), 0.05, 5.0, n=12)
    rng = np.random.default_rng(0)
    q, theta = np.exp(rng.uniform(np.log(0.05), np.log(5.0), 25)), rng.uniform(0, np.pi / 2, 25)
    direct = gaussian.expect_pair(elu, elu, q, np.cos(theta), kinks=(0.0,), n=16)
    assert table.at_theta(table.at_q(q), theta) == pytest.approx(direct, abs=1e-8)
