"""Expectations under a Gaussian: E[f(sqrt(q) z)] for z ~ N(0, 1).

Two quadratures, both vectorised over arrays of variances ``q``:

* smooth integrands use probabilists' Gauss-Hermite quadrature,
  E[g(z)] ~= sum_i w_i g(z_i)  (nodes/weights of the weight exp(-z^2/2), normalised);
* integrands with kinks (ReLU at 0, hardtanh at +-1, ...) converge only
  algebraically under Gauss-Hermite, and steep smooth ones (tanh(sqrt(q) z) at
  large q, with poles near the real axis) slowly; for those the range
  [-L, L] (L = 12: the mass beyond is below 1e-32) is split at fixed points
  and at the kinks (in z-space: k / sqrt(q)), and each smooth piece is
  integrated against the Gaussian density with Gauss-Legendre, which
  converges exponentially on a smooth piece.

``expect(..., check=True)`` repeats the computation with twice the nodes and
raises ``QuadratureError`` when the two disagree by more than the tolerance:
the convergence check the theory relies on. Without kinks, a Gauss-Hermite
result that fails the check is recomputed piecewise before giving up.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]

_TAIL = 12.0  # |z| beyond which the N(0,1) mass (< 1e-32) is ignored
_SPLITS = (-6.0, -3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0, 6.0)  # z-points that keep each piece short
_SQRT_2PI = np.sqrt(2.0 * np.pi)


class QuadratureError(ArithmeticError):
    """Raised when a quadrature has not converged to the requested tolerance."""


@lru_cache(maxsize=16)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / _SQRT_2PI


@lru_cache(maxsize=16)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _expect_hermite(f: ArrayFn, q: np.ndarray, n: int, mean: np.ndarray) -> np.ndarray:
    z, w = _hermite(n)
    x = mean[..., None] + np.sqrt(q)[..., None] * z
    return np.sum(f(x) * w, axis=-1)


def _expect_pieces(f: ArrayFn, q: np.ndarray, kinks: Sequence[float], n: int, mean: np.ndarray) -> np.ndarray:
    """Split [-L, L] in z at the kinks and integrate each piece with Gauss-Legendre."""
    t, w = _legendre(n)
    s = np.sqrt(q)[..., None]
    m = mean[..., None]
    kinks_z = [np.clip((k - m) / np.maximum(s, 1e-300), -_TAIL, _TAIL) for k in kinks]
    fixed = [np.full_like(s, z) for z in (-_TAIL, *_SPLITS, _TAIL)]
    cuts = np.sort(np.concatenate(fixed + kinks_z, axis=-1), axis=-1)  # (..., pieces + 1)
    total = np.zeros(q.shape)
    for j in range(cuts.shape[-1] - 1):
        lo, hi = cuts[..., j : j + 1], cuts[..., j + 1 : j + 2]
        half = 0.5 * (hi - lo)
        z = lo + half * (t + 1.0)  # (..., n): nodes mapped onto [lo, hi]
        density = np.exp(-0.5 * z * z) / _SQRT_2PI
        total = total + np.sum(f(m + s * z) * density * w, axis=-1) * half[..., 0]
    return total


def expect(
    f: ArrayFn,
    q: float | np.ndarray = 1.0,
    *,
    mean: float | np.ndarray = 0.0,
    kinks: Sequence[float] = (),
    n: int = 160,
    check: bool = False,
    rtol: float = 1e-7,
    atol: float = 1e-12,
) -> np.ndarray:
    """E[f(mean + sqrt(q) z)], z ~ N(0, 1), for every entry of ``q`` (``q >= 0``) and ``mean``.

    Args:
        f: a vectorised function of a float64 array (it sees shape ``q.shape + (n,)``).
        q: variance (scalar or array) of the Gaussian argument.
        mean: its mean (scalar or array, broadcast against ``q``).
        kinks: points ``x`` where ``f`` (or the derivative in use) is not smooth.
        n: Gauss-Hermite nodes; the piecewise rule uses n / 2 per piece (10+ pieces).
        check: also evaluate with ``2 n`` nodes and raise ``QuadratureError`` if
            ``|I_n - I_2n| > atol + rtol |I_2n|`` anywhere.

    Example:
        >>> round(float(expect(lambda x: x**2, 3.0)), 12)
        3.0
    """
    q, mean = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(mean, dtype=np.float64))
    if np.any(~np.isfinite(q)) or np.any(q < 0):
        raise ValueError(f"q must be finite and >= 0, got {q}")

    def converged(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))

    pieces = bool(kinks)
    value = _expect_pieces(f, q, kinks, n // 2, mean) if pieces else _expect_hermite(f, q, n, mean)
    if not check:
        return value
    finer = _expect_pieces(f, q, kinks, n, mean) if pieces else _expect_hermite(f, q, 2 * n, mean)
    if not converged(value, finer) and not pieces:  # steep but smooth: try the piecewise rule
        value, finer = _expect_pieces(f, q, kinks, n // 2, mean), _expect_pieces(f, q, kinks, n, mean)
    if not converged(value, finer):
        err = float(np.max(np.abs(value - finer)))
        raise QuadratureError(f"quadrature did not converge: max |I_n - I_2n| = {err:.3g} with n={n}; "
                              "raise n or declare the integrand's kinks")
    return finer


def expect_pair(
    f: ArrayFn,
    g: ArrayFn,
    q: float | np.ndarray,
    c: float | np.ndarray,
    *,
    n: int = 64,
) -> np.ndarray:
    """E[f(u1) g(u2)] for (u1, u2) ~ N(0, q [[1, c], [c, 1]]), elementwise over arrays ``q`` and ``c``.

    With u1 = sqrt(q) z1 and u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2): a Gauss-Hermite
    product rule on n x n nodes (Poole et al. 2016, eq. 5). Smooth integrands
    converge fast; kinked ones only as O(1/n): for ReLU the absolute error is
    about 4e-3 at n = 32, 2e-3 at 64, 1e-3 at 128 (tested against the
    arc-cosine kernel). It serves the correlation map's fixed point c* and
    xi_c in the chaotic phase; splitting at the kinks here is still to do.
    """
    q, c = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64))
    z, w = _hermite(n)
    s = np.sqrt(q)[..., None, None]
    cc = c[..., None, None]
    u1 = s * z[:, None]
    u2 = s * (cc * z[:, None] + np.sqrt(np.clip(1 - cc * cc, 0, None)) * z[None, :])
    return np.sum(f(u1) * g(u2) * (w[:, None] * w[None, :]), axis=(-2, -1))


def normal_cdf(x: np.ndarray | float) -> np.ndarray:
    """Phi(x) = P(z <= x) for z ~ N(0, 1), via scipy.special.ndtr."""
    from scipy.special import ndtr

    return ndtr(np.asarray(x, dtype=np.float64))
