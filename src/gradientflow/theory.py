r"""Mean-field signal propagation: predictions for any activation, weight and bias scale.

Setting (Poole et al. 2016, "Exponential expressivity in deep neural networks
through transient chaos"; Schoenholz et al. 2017, "Deep Information
Propagation"): a wide network with W_ij ~ N(0, sigma_w2 / fan_in),
b_i ~ N(0, sigma_b2), pre-activations z_l = W_l phi(z_{l-1}) + b_l,
z ~ N(0, 1) below.

* length map     q_{l+1} = sigma_w2 E[phi(sqrt(q_l) z)^2] + sigma_b2; fixed point q*
* correlation    c_{l+1} = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*, (u1, u2) with correlation c; fixed point c*
* chi_1          sigma_w2 E[phi'(sqrt(q*) z)^2]: < 1 ordered (gradients vanish), > 1 chaotic (explode), = 1 critical
* depth scales   xi_q = -1 / log(dq_map/dq at q*) = -1/log(chi_1 + sigma_w2 E[phi'' phi])   (Schoenholz eq. 5)
                 xi_c = -1 / log(chi_c*), chi_c* = sigma_w2 E[phi'(u1) phi'(u2)] at c*       (Schoenholz eq. 9)
                 (= -1/log chi_1 in the ordered phase, where c* = 1)
* trainable depth about 6 xi_c (Schoenholz et al. 2017, section 5)

In formulas (rendered on the documentation site), with \(z \sim N(0, 1)\):

\[ q_{l+1} = \sigma_w^2\,\mathbb{E}\big[\phi(\sqrt{q_l}\,z)^2\big] + \sigma_b^2, \qquad
   \chi_1 = \sigma_w^2\,\mathbb{E}\big[\phi'(\sqrt{q^*}\,z)^2\big], \qquad
   \xi_c = -1 / \log \chi_{c^*}. \]

dq_map/dq uses Stein's lemma, E[phi phi'' + phi'^2] = E[phi(x) phi'(x) x] / q (x = sqrt(q) z),
so no second derivative is needed. Pure NumPy/SciPy math: no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import gaussian
from .activations import Activation, get

_Q_MAX = 1e12  # a length map still growing past this has no finite fixed point
_BISECT_STEPS = 60
_ITERATIONS = 30


_NODES = 48  # Gauss-Legendre nodes per piece x 2 (the pieces are short and smooth; tests check convergence)
_PIECE_NODES = 12  # Gauss-Legendre nodes per piece for a kinked one (ReLU's kernel to ~1e-10; tests check)
_X_BREAKS = (-8.0, -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def _act(activation: str | Activation) -> Activation:
    return get(activation) if isinstance(activation, str) else activation


def _breaks(act: Activation) -> tuple[float, ...]:
    """Where to split the quadrature in x: the kinks, and the activation's own scale (|x| ~ 1).

    At large q the Gaussian is wide and phi' lives in a sliver near 0; splitting
    at fixed x keeps that sliver resolved (tanh's chi_1 at q = 1000 needs it).
    """
    return tuple(sorted(set(act.kinks) | set(_X_BREAKS)))


def q_map(activation: str | Activation, q, sigma_w2, sigma_b2):
    r"""q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2 (Poole et al. 2016, eq. 3), elementwise:
    \(q \mapsto \sigma_w^2\,\mathbb{E}[\phi(\sqrt{q}\,z)^2] + \sigma_b^2\)."""
    act = _act(activation)
    return sigma_w2 * gaussian.expect(lambda x: act.numpy(x) ** 2, q, kinks=_breaks(act), n=_NODES) + sigma_b2


def q_star(activation: str | Activation, sigma_w2, sigma_b2, q0: float = 1.0) -> np.ndarray:
    """The fixed point q* = q_map(q*) that a network reaches from inputs of variance ``q0``, elementwise.

    The map is iterated from q_1 = sigma_w2 q0 + sigma_b2 (so an activation with
    several fixed points, such as gelu, gets the one its layers converge to),
    then the root next to the iterate, in the direction the map moves, is
    bracketed and solved in log q (scipy.optimize.elementwise.find_root). Returns 0 where q collapses (the ordered
    phase of an odd phi at sigma_b2 = 0), inf where it grows without bound,
    and q_1 itself where q_1 is already fixed (ReLU at sigma_w2 = 2, sigma_b2 = 0).
    """
    act = _act(activation)
    return _fixed_point(lambda q, w, b: q_map(act, q, w, b), sigma_w2, sigma_b2, q0)


def _fixed_point(qmap, sigma_w2, sigma_b2, q0: float) -> np.ndarray:
    """``q_star``'s search for any length map ``qmap(q, w, b)`` (exact, or tabulated for the phase grid)."""
    from scipy.optimize.elementwise import find_root

    w, b = np.broadcast_arrays(np.asarray(sigma_w2, dtype=np.float64), np.asarray(sigma_b2, dtype=np.float64))
    gap = lambda q: qmap(q, w, b) - q  # noqa: E731
    q = np.clip(w * q0 + b, 1e-300, _Q_MAX)
    fixed = np.abs(gap(q)) <= 1e-12 * q
    for _ in range(_ITERATIONS):  # walk into the basin of the attracting fixed point
        q = np.clip(qmap(q, w, b), 1e-300, _Q_MAX)
    rising = gap(q) > 0
    lo, hi = q.copy(), q.copy()
    for _ in range(45):  # widen the bracket in the direction of motion until the sign flips
        open_hi, open_lo = rising & (gap(hi) > 0), ~rising & (gap(lo) < 0)
        if not (open_hi.any() or open_lo.any()):
            break
        hi = np.where(open_hi, np.minimum(hi * 4.0, 4 * _Q_MAX), hi)
        lo = np.where(open_lo, np.maximum(lo / 1e3, 1e-300), lo)
    unbounded = rising & (gap(hi) > 0)
    collapsed = ~rising & (gap(lo) < 0)
    at_lo = gap(lo) == 0  # the bracket's end is already a root (to rounding)
    bracketed = ~(unbounded | collapsed | (lo == hi) | at_lo)
    found = np.where((lo == hi) | at_lo, lo, np.sqrt(lo * hi))
    if bracketed.any():  # Chandrupatla's method in log q (scipy.optimize.elementwise)
        idx = np.flatnonzero(bracketed)
        in_log = lambda s, i: qmap(np.exp(s), w.ravel()[i], b.ravel()[i]) - np.exp(s)  # noqa: E731
        res = find_root(in_log, (np.log(lo.ravel()[idx]), np.log(hi.ravel()[idx])), args=(idx,),
                        tolerances={"xatol": 1e-14, "xrtol": 1e-13})
        # a bracket that rounding made invalid (a critical point, where q* -> 0 slowly) keeps its midpoint
        found.ravel()[idx] = np.where(np.isfinite(res.x), np.exp(res.x), found.ravel()[idx])
    result = np.where(unbounded | (found > _Q_MAX), np.inf, np.where(collapsed, 0.0, found))
    return np.where(fixed, np.clip(w * q0 + b, 0, None), result)


def _positive(q):
    """q* = 0 stands for the limit q -> 0+ (e.g. ReLU's chi_1 stays sigma_w2 / 2 there): evaluate at a tiny q."""
    return np.maximum(np.asarray(q, dtype=np.float64), 1e-200)


def chi1(activation: str | Activation, q, sigma_w2):
    r"""chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2]: the per-layer factor on the squared gradient (Poole eq. 7):
    \(\chi_1 = \sigma_w^2\,\mathbb{E}[\phi'(\sqrt{q}\,z)^2]\)."""
    act = _act(activation)
    q = _positive(q)
    return sigma_w2 * gaussian.expect(lambda x: act.numpy_derivative(x) ** 2, q, kinks=_breaks(act), n=_NODES)


def q_map_slope(activation: str | Activation, q, sigma_w2):
    """d q_map / dq = sigma_w2 E[phi(x) phi'(x) x] / q, x = sqrt(q) z (Stein's lemma; Schoenholz eq. 5)."""
    act = _act(activation)
    q = _positive(q)
    return sigma_w2 * gaussian.expect(lambda x: act.numpy(x) * act.numpy_derivative(x) * x, q, kinks=_breaks(act), n=_NODES) / q


def _pair(f, act: Activation, q, c):
    """E[f(u1) f(u2)] by the piecewise pair rule, split at the kinks (at 0 for a smooth activation).

    A Gauss-Hermite product rule is not used: it converges as O(1/n) across a kink and, for tanh
    at q ~ 2, is off by 3e-4 at 32 nodes (poles near the real axis), which puts c_map(1) away from 1
    at q* and hides the sign of c_map(c) - c just below c = 1."""
    return gaussian.expect_pair(f, f, q, c, kinks=act.kinks or (0.0,), n=_PIECE_NODES)


def c_map(activation: str | Activation, c, q, sigma_w2, sigma_b2):
    """c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*, (u1, u2) ~ N(0, q*[[1, c], [c, 1]]) (Poole eq. 5)."""
    act = _act(activation)
    q = _positive(q)
    return (sigma_w2 * _pair(act.numpy, act, q, c) + sigma_b2) / q


def c_star(activation: str | Activation, q, sigma_w2, sigma_b2) -> np.ndarray:
    """The stable fixed point of the correlation map: 1 when chi_1 <= 1 (ordered), else the root in [0, 1)."""
    act = _act(activation)
    q, w, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q, sigma_w2, sigma_b2)))
    chaotic = chi1(act, q, w) > 1.0 + 1e-9  # rounding at a critical point is not chaos
    out = np.ones(q.shape)
    if not chaotic.any():
        return out
    qs, ws, bs = q[chaotic], w[chaotic], b[chaotic]
    out[chaotic] = _stable_c(lambda c, i: c_map(act, c, qs[i], ws[i], bs[i]) - c, len(qs))
    return out


def _stable_c(gap, cells: int) -> np.ndarray:
    """The root of gap(c, cell) = c_map(c) - c in [0, 1 - 1e-6] for each chaotic cell (Chandrupatla's method):
    c_map(0) >= 0 and, with chi_1 > 1, c_map(c) < c just below the unstable fixed point c = 1.
    Where quadrature noise hides the sign at 1 - 1e-6 the bracket's top steps back to 1 - 1e-5 ...
    1 - 1e-3; a cell without a sign change even there (on the critical line) gets c* = 1."""
    from scipy.optimize.elementwise import find_root

    idx = np.arange(cells)
    lo, hi = np.zeros(cells), np.full(cells, 1.0 - 1e-6)
    for gap_to_one in (1e-5, 1e-4, 1e-3):  # quadrature noise may hide the sign just below 1: step back
        hi = np.where(gap(hi, idx) < 0, hi, 1.0 - gap_to_one)
    # c_map(0) = (w E[phi]^2 + b) / q >= 0. Where it is 0 (odd phi, b = 0), c = 0 is a fixed point: the
    # stable one when the map's slope there is below 1, else c* lies above it (start the bracket at 1e-6)
    lo = np.where(gap(lo, idx) <= 1e-12, 1e-6, 0.0)
    zero = gap(lo, idx) <= 0
    ok = ~zero & (gap(hi, idx) < 0)
    out = np.where(zero, 0.0, 1.0)
    if ok.any():
        res = find_root(gap, (lo[ok], hi[ok]), args=(idx[ok],), tolerances={"xatol": 1e-12, "xrtol": 1e-12})
        out[ok] = res.x
    return out


def chi_c(activation: str | Activation, c, q, sigma_w2):
    """chi_c = sigma_w2 E[phi'(u1) phi'(u2)]: the slope of the correlation map at c (Schoenholz eq. 9)."""
    act = _act(activation)
    return sigma_w2 * _pair(act.numpy_derivative, act, _positive(q), c)


@dataclass(frozen=True)
class Point:
    """The mean-field picture at one (sigma_w2, sigma_b2)."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi1: float | None
    c_star: float | None
    xi_q: float | None
    xi_c: float | None
    phase: str  # "ordered", "chaotic", "critical" or "unbounded" (q* = inf)
    max_trainable_depth: float | None


def _depth_scale(rate: float) -> float:
    """-1/log(rate): inf at rate 1 (critical), for 0 < rate; 0 when rate is 0."""
    if rate <= 0:
        return 0.0
    if abs(rate - 1.0) < 1e-12:
        return math.inf
    return -1.0 / math.log(rate) if rate < 1 else 1.0 / math.log(rate)


def analyse(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> Point:
    """q*, chi_1, c*, xi_q, xi_c, the phase and the trainable depth 6 xi_c at one point."""
    act = _act(activation)
    q = float(q_star(act, sigma_w2, sigma_b2, q0))
    if not math.isfinite(q):
        return Point(act.name, sigma_w2, sigma_b2, q, None, None, None, None, "unbounded", None)
    x1 = float(chi1(act, q, sigma_w2))
    c = float(c_star(act, q, sigma_w2, sigma_b2))
    xi_q = _depth_scale(float(q_map_slope(act, q, sigma_w2)))
    rate = x1 if c >= 1.0 else float(chi_c(act, c, q, sigma_w2))
    xi_c = _depth_scale(rate)
    phase = "critical" if abs(x1 - 1.0) < 1e-6 else ("ordered" if x1 < 1 else "chaotic")
    return Point(act.name, sigma_w2, sigma_b2, q, x1, c, xi_q, xi_c, phase, 6.0 * xi_c)


class NoCriticalPoint(ValueError):
    """Raised when chi_1 = 1 has no solution with a finite q* at the asked sigma_b2."""


def critical_line(activation: str, q) -> tuple[np.ndarray, np.ndarray]:
    """The critical line parametrised by q* (Poole et al. 2016, section 3).

    chi_1 = 1 at the fixed point q gives sigma_w2(q) = 1 / E[phi'(sqrt(q) z)^2] and,
    from q = q_map(q), sigma_b2(q) = q - sigma_w2(q) E[phi(sqrt(q) z)^2].
    """
    act = _act(activation)
    q = _positive(q)
    w = 1.0 / gaussian.expect(lambda x: act.numpy_derivative(x) ** 2, q, kinks=_breaks(act), n=_NODES)
    return w, q - w * gaussian.expect(lambda x: act.numpy(x) ** 2, q, kinks=_breaks(act), n=_NODES)


def critical_sigma_w2(activation: str, sigma_b2):
    """sigma_w2 with chi_1(q*) = 1 at each given sigma_b2: the critical (edge-of-chaos) initialisation.

    Solves sigma_b2(q) = target on the parametric critical line (``critical_line``)
    in log q (scipy's elementwise ``find_root``), vectorised over the targets; sigma_b2 = 0 may sit at
    the q -> 0 end (tanh: sigma_w2 = 1; ReLU: 2; linear: 1). Raises
    ``NoCriticalPoint`` naming the sigma_b2 where the line never reaches it
    (ReLU and linear networks have sigma_b2(q) = 0 for every q: with bias
    variance their q grows without bound at sigma_w2 = 2, resp. 1).
    """
    act = _act(activation)
    target = np.atleast_1d(np.asarray(sigma_b2, dtype=np.float64))
    grid = np.logspace(-10, 6, 321)
    _, b_grid = critical_line(act, grid)
    limit = b_grid[0]  # sigma_b2 as q -> 0
    above = b_grid[None, :] >= target[:, None]
    crosses = above[:, 1:] & ~above[:, :-1]
    has = crosses.any(axis=1)
    at_limit = ~has & (np.abs(target - limit) <= 1e-8 * max(1.0, abs(limit)))
    bad = ~has & ~at_limit
    if bad.any():
        which = float(target[np.argmax(bad)])
        reach = f"[{b_grid.min():.4g}, {b_grid.max():.4g}]"
        raise NoCriticalPoint(f"{act.name} has no critical point at sigma_b2={which:g}: along chi_1 = 1 the "
                              f"fixed point's sigma_b2 only spans {reach} for q* in [1e-10, 1e6]")
    k = np.where(has, np.argmax(crosses, axis=1), 0)
    q = np.full(target.shape, grid[0])
    if has.any():  # Chandrupatla's method in log q on each target's bracketing grid cell
        from scipy.optimize.elementwise import find_root

        lo, hi = np.log(grid[k[has]]), np.log(grid[k[has] + 1])
        res = find_root(lambda s, t: critical_line(act, np.exp(s))[1] - t, (lo, hi), args=(target[has],),
                        tolerances={"xatol": 1e-14, "xrtol": 1e-13})
        # a bracket end that is itself a root (sigma_b2(q) == target to the last digit) is taken as it is
        q[has] = np.exp(np.where(np.isfinite(res.x), res.x, hi))
    w = critical_line(act, q)[0]
    return w if np.ndim(sigma_b2) else float(w[0])


@dataclass(frozen=True)
class LayerPrediction:
    """Mean-field prediction for hidden layer ``index`` of a concrete network."""

    index: int
    q: float  # variance of the pre-activations z_l
    mean: float  # E[phi(z_l)]
    std: float  # sqrt(Var phi(z_l)): the pooled std of the layer's outputs
    chi: float  # sigma_w2 E[phi'(z_l)^2]: this layer's factor on the squared gradient
    grad_norm_factor: float  # ||dL/dh_l|| / ||dL/dh_L|| = sqrt(prod_{k>l} chi_k)


def predict_layers(activation: str, depth: int, sigma_w2: float, sigma_b2: float = 0.0,
                   input_var: float = 1.0) -> list[LayerPrediction]:
    """Per-layer predictions: q_1 = sigma_w2 input_var + sigma_b2, then the length map, layer by layer.

    The gradient-norm factor multiplies the chi of the layers above (chi_1^((L-l)/2)
    once the q_l have reached q*), so it predicts how much smaller the gradient
    w.r.t. layer l's output is than at the top (C2, C18).
    """
    act = _act(activation)
    qs = [sigma_w2 * input_var + sigma_b2]
    for _ in range(depth - 1):
        qs.append(float(q_map(act, qs[-1], sigma_w2, sigma_b2)))
    q = np.array(qs)
    m1 = gaussian.expect(act.numpy, q, kinks=_breaks(act), n=_NODES)
    m2 = gaussian.expect(lambda x: act.numpy(x) ** 2, q, kinks=_breaks(act), n=_NODES)
    chis = chi1(act, q, sigma_w2)
    # the gradient reaching h_l has passed through layers l+1..L: prod of their chi
    above = np.concatenate([np.cumprod(chis[::-1][:-1])[::-1], [1.0]]) if depth > 1 else np.ones(1)
    return [LayerPrediction(i + 1, float(q[i]), float(m1[i]), float(math.sqrt(max(m2[i] - m1[i] ** 2, 0.0))),
                            float(chis[i]), float(math.sqrt(above[i]))) for i in range(depth)]


@functools.lru_cache(maxsize=16)
def _length_tables(act: Activation) -> tuple[gaussian.LogQTable, gaussian.LogQTable]:
    """E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2] tabulated over log q (built once per activation)."""
    return (gaussian.LogQTable(lambda x: act.numpy(x) ** 2, _breaks(act), n=_NODES),
            gaussian.LogQTable(lambda x: act.numpy_derivative(x) ** 2, _breaks(act), n=_NODES))


def _chaotic_c(act: Activation, q: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c*, chi_c at c*) for chaotic cells, from Chebyshev tables of the correlation integrals in (log q, theta)."""
    span = (max(float(q.min()), 1e-200), float(q.max()))
    square = _length_tables(act)[0]
    phi = gaussian.PairTable(act.numpy, act.numpy, act.kinks, *span, n=_PIECE_NODES, scale=square)  # normalised kernel
    dphi = gaussian.PairTable(act.numpy_derivative, act.numpy_derivative, act.kinks, *span, n=_PIECE_NODES)
    rows, drows = phi.at_q(q), dphi.at_q(q)
    gain = w * square(q) / q  # c_map(c) = gain K(c) + b / q with K the normalised kernel
    theta = lambda c: np.arccos(np.clip(c, -1.0, 1.0))  # noqa: E731
    c = _stable_c(lambda c, i: gain[i] * phi.at_theta(rows[i], theta(c)) + b[i] / q[i] - c, len(q))
    return c, w * dphi.at_theta(drows, theta(c))


def phase_grid(activation: str, sigma_w2: np.ndarray, sigma_b2: np.ndarray) -> dict[str, np.ndarray]:
    """q*, chi_1 and xi_c on the grid sigma_b2 (rows) x sigma_w2 (columns), vectorised.

    The same maps as ``analyse``, evaluated through tables so that a 200 x 200 grid takes about a
    second: the length map and chi_1 through ``gaussian.LogQTable`` (cubic in log q), the
    correlation map and chi_c through ``gaussian.PairTable`` (Chebyshev in log q and in theta,
    c = cos theta), built over the range of q* the chaotic cells span. xi_c is -1/log chi_1 in the
    ordered phase and -1/log chi_c(c*) in the chaotic one. Where q* grows without bound (ReLU-like
    activations above their critical sigma_w2) the correlation map tends to that of a positively
    homogeneous function, whose slope at c = 1 is exactly 1: correlations converge
    sub-exponentially and xi_c is inf there, as on the critical line.
    """
    act = _act(activation)
    square, dsquare = _length_tables(act)
    b, w = np.meshgrid(np.asarray(sigma_b2, float), np.asarray(sigma_w2, float), indexing="ij")
    q = _fixed_point(lambda q, w, b: w * square(q) + b, w, b, 1.0)
    finite = np.isfinite(q)
    x1 = np.where(finite, w * dsquare(_positive(np.where(finite, q, 1.0))), np.inf)
    xi = np.full(q.shape, np.inf)
    c_star = np.ones(q.shape)
    ordered = finite & (x1 < 1)
    xi[ordered] = -1.0 / np.log(x1[ordered])
    chaotic = finite & (x1 > 1.0 + 1e-9)
    if chaotic.any():
        c_star[chaotic], rate = _chaotic_c(act, q[chaotic], w[chaotic], b[chaotic])
        with np.errstate(divide="ignore"):
            xi[chaotic] = np.where(rate < 1, -1.0 / np.log(rate), np.inf)
    return {"sigma_w2": w, "sigma_b2": b, "q_star": q, "chi1": x1, "c_star": c_star, "xi_c": xi}


def phase_diagram(activation: str, sigma_w2_max: float, sigma_b2_max: float, resolution: int) -> dict:
    """``phase_grid`` on ``resolution`` points of (0, sigma_w2_max] x [0, sigma_b2_max], and the critical
    line sigma_w2(sigma_b2) on the same sigma_b2 points under "critical" (None where the activation has
    no critical point at sigma_b2 > 0, as ReLU: the figure then shows the phases without the line)."""
    w = np.linspace(sigma_w2_max / resolution, sigma_w2_max, resolution)
    b = np.linspace(0.0, sigma_b2_max, resolution)
    grid = phase_grid(activation, w, b)
    try:
        grid["critical"] = (critical_sigma_w2(activation, b), b)
    except NoCriticalPoint:
        grid["critical"] = None
    return grid
