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


def _piece_rule(q: np.ndarray, kinks: Sequence[float], n: int, mean: np.ndarray,
                extra_cuts: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z (..., pieces * n) and weights (density x Gauss-Legendre weight) of the piecewise rule.

    [-L, L] in z is cut at fixed points, at the kinks (x = k, i.e. z = (k - mean) / sqrt(q)) and at
    ``extra_cuts`` (z-points of shape q.shape + (1,)); each piece gets n Gauss-Legendre nodes.
    """
    t, w = _legendre(n)
    s = np.sqrt(q)[..., None]
    m = mean[..., None]
    kinks_z = [np.clip((k - m) / np.maximum(s, 1e-300), -_TAIL, _TAIL) for k in kinks]
    extra = [np.broadcast_to(np.clip(e, -_TAIL, _TAIL), s.shape) for e in extra_cuts]
    fixed = [np.full_like(s, z) for z in (-_TAIL, *_SPLITS, _TAIL)]
    cuts = np.sort(np.concatenate(fixed + kinks_z + extra, axis=-1), axis=-1)  # (..., pieces + 1)
    lo, hi = cuts[..., :-1, None], cuts[..., 1:, None]
    half = 0.5 * (hi - lo)
    z = lo + half * (t + 1.0)  # (..., pieces, n): nodes mapped onto each [lo, hi]
    weight = np.exp(-0.5 * z * z) * (w / _SQRT_2PI) * half
    return z.reshape(*q.shape, -1), weight.reshape(*q.shape, -1)


def _expect_pieces(f: ArrayFn, q: np.ndarray, kinks: Sequence[float], n: int, mean: np.ndarray,
                   chunk: int = 2048) -> np.ndarray:
    """Split [-L, L] in z at the kinks and integrate each piece with Gauss-Legendre.

    Many integrals at once are done ``chunk`` at a time: the node arrays then stay in the cache
    (one pass over 10^5 integrals is about 8x faster so than with all nodes in memory at once)."""
    if q.size > chunk:
        flat_q, flat_m = q.reshape(-1), mean.reshape(-1)
        parts = [_expect_pieces(f, flat_q[i:i + chunk], kinks, n, flat_m[i:i + chunk], chunk)
                 for i in range(0, flat_q.size, chunk)]
        return np.concatenate(parts).reshape(q.shape)
    z, weight = _piece_rule(q, kinks, n, mean)
    return np.sum(f(mean[..., None] + np.sqrt(q)[..., None] * z) * weight, axis=-1)


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
    kinks: Sequence[float] = (),
) -> np.ndarray:
    """E[f(u1) g(u2)] for (u1, u2) ~ N(0, q [[1, c], [c, 1]]), elementwise over arrays ``q`` and ``c``.

    With u1 = sqrt(q) z1 and u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2) (Poole et al. 2016, eq. 5).
    Without ``kinks``: a Gauss-Hermite product rule on n x n nodes, exponentially convergent for
    smooth integrands. With ``kinks`` (points x where f or g is not smooth, as ReLU's 0), the
    integral is iterated: the inner one over z2 is E[g(m + sqrt(v) z2)] with m = sqrt(q) c z1 and
    v = q (1 - c^2), by the piecewise rule split where u2 crosses a kink; the outer one over z1 is
    split where u1 crosses a kink and where sqrt(q) c z1 does (the inner integral's own kink as
    c -> 1). Every piece is smooth, so both converge exponentially (a Gauss-Hermite product rule
    converges only as O(1/n) across a kink). ``n`` is then the number of nodes per piece.
    """
    q, c = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64))
    if not kinks:
        z, w = _hermite(n)
        s = np.sqrt(q)[..., None, None]
        cc = c[..., None, None]
        u1 = s * z[:, None]
        u2 = s * (cc * z[:, None] + np.sqrt(np.clip(1 - cc * cc, 0, None)) * z[None, :])
        return np.sum(f(u1) * g(u2) * (w[:, None] * w[None, :]), axis=(-2, -1))
    root = np.sqrt(q)
    slope = np.where(np.abs(c) > 1e-3, root * c, 1e-300)  # the inner mean's rate in z1
    inner_kinks = [(k / slope)[..., None] for k in kinks]  # z1 where the inner mean crosses a kink
    z1, w1 = _piece_rule(q, kinks, n, np.zeros_like(q), extra_cuts=inner_kinks)
    m = root[..., None] * c[..., None] * z1
    v = np.broadcast_to((q * np.clip(1 - c * c, 0, None))[..., None], m.shape)
    inner = _expect_pieces(g, np.ascontiguousarray(v), kinks, n, m)
    return np.sum(f(root[..., None] * z1) * inner * w1, axis=-1)


# --- tabulated expectations: the same integrals on a grid, for many cells at once (the phase diagram) ---


def _chebyshev(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev points of the second kind on [-1, 1] and their barycentric weights (Berrut & Trefethen 2004)."""
    j = np.arange(n)
    weights = (-1.0) ** j
    weights[[0, -1]] *= 0.5
    return np.cos(np.pi * j / (n - 1)), weights


def _barycentric(nodes: np.ndarray, weights: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The polynomial through (nodes, values[..., j]) at x (shape values.shape[:-1]), by the barycentric formula."""
    diff = x[..., None] - nodes
    exact = diff == 0
    terms = weights / np.where(exact, 1.0, diff)
    smooth = np.sum(terms * values, axis=-1) / np.sum(terms, axis=-1)
    hit = exact.any(axis=-1)
    return np.where(hit, np.sum(np.where(exact, values, 0.0), axis=-1), smooth)


class LogQTable:
    """E[f(sqrt(q) z)] tabulated over log q and interpolated: the 1-D integrals of the phase diagram.

    The integral is computed with ``expect``'s piecewise rule (cut at ``kinks``, or at 0) at ``points``
    log-spaced q in [lo, hi], then a cubic spline in (log q, log value) interpolates; outside the
    range the end slopes extrapolate as a power law (E f(sqrt(q) z)^2 ~ q or ~ const at both ends).
    Values must be positive (second moments, squared derivatives).
    """

    def __init__(self, f: ArrayFn, kinks: Sequence[float] = (), *, lo: float = 1e-30, hi: float = 1e12,
                 points: int = 2801, n: int = 48):
        from scipy.interpolate import CubicSpline

        self.log_q = np.linspace(np.log(lo), np.log(hi), points)
        values = expect(f, np.exp(self.log_q), kinks=kinks or (0.0,), n=n)  # piecewise: q spans 42 decades
        if np.any(values <= 0):
            raise ValueError("LogQTable needs a positive integrand's expectation (log-log interpolation)")
        self.spline = CubicSpline(self.log_q, np.log(values))
        self.slopes = self.spline(self.log_q[[0, -1]], 1)

    def __call__(self, q) -> np.ndarray:
        s = np.log(np.maximum(np.asarray(q, dtype=np.float64), 1e-300))
        lo, hi = self.log_q[0], self.log_q[-1]
        inside = self.spline(np.clip(s, lo, hi))
        beyond = np.where(s < lo, (s - lo) * self.slopes[0], np.where(s > hi, (s - hi) * self.slopes[1], 0.0))
        return np.exp(inside + beyond)


class PairTable:
    """E[f(u1) g(u2)] of ``expect_pair`` on a Chebyshev grid in (log q, theta), c = cos(theta).

    In theta the correlation maps of kinked activations stay smooth (ReLU's arc-cosine kernel
    (sin t + (pi - t) cos t) / (2 pi) is analytic in t, not in c at c = 1), so Chebyshev
    interpolation in both variables converges fast. ``at_q`` interpolates in log q, giving each
    cell its values at the theta nodes; ``at_theta`` then interpolates in theta. With ``scale`` the
    table holds E[f(u1) g(u2)] / scale(q): for f = g = phi and scale(q) = E[phi(sqrt(q) z)^2] that is
    the normalised kernel, in [-1, 1] whatever q, so interpolating it keeps the relative error small.
    """

    def __init__(self, f: ArrayFn, g: ArrayFn, kinks: Sequence[float], q_lo: float, q_hi: float, *,
                 nq: int = 32, ntheta: int = 24, theta_max: float = np.pi / 2, n: int = 12,
                 scale: ArrayFn | None = None):
        self.s_lo, self.s_hi = np.log(q_lo), np.log(max(q_hi, q_lo * (1 + 1e-9)))
        self.theta_max = theta_max
        self.s_nodes, self.s_weights = _chebyshev(nq)
        self.t_nodes, self.t_weights = _chebyshev(ntheta)
        q = np.exp(self._to_s(self.s_nodes))[:, None]
        theta = self._to_theta(self.t_nodes)[None, :]
        # the piecewise pair rule, n nodes per piece (cut at 0 too when f and g have no kink)
        pair = expect_pair(f, g, q, np.cos(theta), kinks=tuple(kinks) or (0.0,), n=n)
        self.values = pair / (1.0 if scale is None else scale(q))

    def _to_s(self, x):
        return self.s_lo + (x + 1) * 0.5 * (self.s_hi - self.s_lo)

    def _to_theta(self, x):
        return (x + 1) * 0.5 * self.theta_max

    def at_q(self, q: np.ndarray) -> np.ndarray:
        """(len(q), ntheta): each q's values at the theta nodes."""
        x = 2 * (np.log(q) - self.s_lo) / (self.s_hi - self.s_lo) - 1
        return _barycentric(self.s_nodes, self.s_weights, self.values.T[None, :, :], np.asarray(x)[:, None])

    def at_theta(self, rows: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Each row's interpolant at its own theta."""
        x = 2 * np.asarray(theta) / self.theta_max - 1
        return _barycentric(self.t_nodes, self.t_weights, rows, x)


def normal_cdf(x: np.ndarray | float) -> np.ndarray:
    """Phi(x) = P(z <= x) for z ~ N(0, 1), via scipy.special.ndtr."""
    from scipy.special import ndtr

    return ndtr(np.asarray(x, dtype=np.float64))
