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
