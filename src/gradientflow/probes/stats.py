"""Pure statistics on tensors, computed on the tensor's own device without reading values back.

Each function returns tensors (never Python numbers), so a probe can add them into its buffers
between flushes without a host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Region = tuple[tuple[float | None, float | None], ...]


def moments(t: Tensor) -> Tensor:
    """[sum t, sum t^2, n] in float64: enough to pool mean and variance over a window.
    The two sums run in the tensor's own precision (torch's blocked reductions: float32 keeps
    about 7 digits of a step's sum) and are pooled across steps in float64; summing in float64
    would first copy the whole tensor to float64, which cost more than the layer's matmul."""
    s, s2, n = moment_sums(t)
    return torch.stack([s, s2, s.new_full((), n)]).double()


def moment_sums(t: Tensor) -> tuple[Tensor, Tensor, int]:
    """(sum t, sum t^2, n): ``moments`` as two 0-d tensors in the tensor's own precision and the
    count, known on the host; the probe pools them in float64 (``sums.Sums``)."""
    flat = t.detach().reshape(-1)
    return flat.sum(), torch.dot(flat, flat), flat.numel()


def pooled_mean_var(m) -> tuple[float, float]:
    """(mean, variance) from summed ``moments`` (a tensor or 3 numbers): E t and E t^2 - (E t)^2."""
    s, s2, n = m.tolist() if isinstance(m, Tensor) else m
    if n == 0:
        return float("nan"), float("nan")
    mean = s / n
    return mean, max(s2 / n - mean * mean, 0.0)


def in_region(z: Tensor, region: Region) -> Tensor:
    """Boolean mask of the entries of ``z`` inside the union of closed intervals ``region``."""
    mask = torch.zeros_like(z, dtype=torch.bool)
    for lo, hi in region:
        if lo is None and hi is None:
            return torch.ones_like(mask)
        if lo is None:
            mask |= z <= hi
        elif hi is None:
            mask |= z >= lo
        else:
            mask |= (z >= lo) & (z <= hi)
    return mask


def count_in_region(z: Tensor, region: Region) -> Tensor:
    """How many entries of ``z`` lie in ``region``, a union of *disjoint* closed intervals (as the
    catalog's saturated and dead regions are): one comparison and one count per interval, with no
    boolean mask built for the union."""
    z = z.detach()
    counts = []
    for lo, hi in region:
        if lo is None and hi is None:
            return torch.tensor(z.numel(), device=z.device)
        if lo is None or hi is None:
            counts.append(torch.count_nonzero(z <= hi if lo is None else z >= lo))
        else:
            counts.append(torch.count_nonzero((z >= lo) & (z <= hi)))
    return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.int64, device=z.device)


def units_view(t: Tensor, unit_dim: int) -> Tensor:
    """``t`` as (samples, units): units along ``unit_dim`` (1 for convolutions, -1 for Linear)."""
    return t.detach().movedim(unit_dim, -1).reshape(-1, t.shape[unit_dim])


def sample_rows(t: Tensor, rows: int | None) -> Tensor:
    """At most ``rows`` evenly strided samples (entries of dim 0) of ``t``, a view; all of it for None.

    The shares counted on them (``saturated``, ``zero``) estimate the batch's: each sample's share
    s_i lies in [0, 1], so over R samples drawn independently of the values (a training batch is
    a random draw) the estimate's error exceeds sqrt(ln(2/delta) / (2 R k)) with probability at
    most delta after k sampled steps (Hoeffding 1963), whatever the correlation between units;
    about 0.24 for R = 32, k = 1, delta = 0.05 and 0.024 after a window of 100 sampled steps. The
    tests check the estimate against the exact share within this bound."""
    if rows is None or t.dim() < 2 or t.shape[0] <= rows:
        return t
    return t[:: -(-t.shape[0] // rows)]


def units_active(z: Tensor, unit_dim: int, dead: Region) -> Tensor:
    """Per unit (along ``unit_dim``), whether any entry of ``z`` lies outside the ``dead`` region.
    A dead region that is one half-line, as every one-sided activation's is, takes one max (or
    min) per unit, with no boolean mask of z's size."""
    z = z.detach()
    unit_dim %= z.dim()
    others = [d for d in range(z.dim()) if d != unit_dim]
    if len(dead) == 1 and (dead[0][0] is None) != (dead[0][1] is None) and others:
        lo, hi = dead[0]
        return z.amax(others) > hi if lo is None else z.amin(others) < lo
    return (~in_region(units_view(z, unit_dim), dead)).any(0)


def sign_coherence(grad: Tensor, max_units: int | None = None) -> Tensor:
    """Per unit (row of the weight gradient), the share of its non-zero entries carrying the
    majority sign, averaged over units (C4: 1.0 when every input of a unit is positive and the
    batch is one sample, since then dL/dw_ij = delta_i x_j shares the sign of delta_i).
    With n+ and n- the counts of each sign: max(n+, n-) / (n+ + n-) = (nz + |n+ - n-|) / (2 nz).
    ``max_units``: average over that many evenly spaced units only (an estimate, for speed)."""
    g = grad.detach().reshape(grad.shape[0], -1)
    if max_units is not None and g.shape[0] > max_units:
        g = g[:: -(-g.shape[0] // max_units)]
    balance = torch.sign(g).sum(1).abs()
    nonzero = torch.count_nonzero(g, dim=1)
    return ((nonzero + balance).double() / (2 * nonzero.clamp(min=1))).mean()


def histogram(t: Tensor, lo: float, hi: float, bins: int, max_values: int | None = None) -> Tensor:
    """Counts of ``t`` in ``bins`` equal bins on [lo, hi]; values outside land in the edge bins.
    ``max_values``: count an evenly strided sample of at most that many values (for speed)."""
    flat = t.detach().reshape(-1)
    if max_values is not None and flat.numel() > max_values:
        flat = flat[:: -(-flat.numel() // max_values)]
    return torch.histc(flat.float().clamp(lo, hi), bins=bins, min=lo, max=hi)


def distinct_rows(weight: Tensor, bias: Tensor | None = None) -> int:
    """How many units (rows of [W | b]) are not exact copies of another (C14: 1 after zero init).

    Exact, and cheap where rows differ: a row whose first value no other row shares is a copy of
    none, so only rows that share their first value are compared whole. Sorting every row
    (``torch.unique(dim=0)``) cost 57 ms for the fifty 500 x 500 layers of a deep lab net."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    _, group, size = torch.unique(rows[:, 0], return_inverse=True, return_counts=True)
    shared = size[group] > 1
    if not bool(shared.any()):
        return rows.shape[0]
    suspects = rows[shared] if bias is None else torch.cat([rows[shared], bias.detach().reshape(-1, 1)[shared]], 1)
    return int((~shared).sum()) + int(torch.unique(suspects, dim=0).shape[0])


# --- which statistics a probe computes ---

GROUPS: dict[str, tuple[str, ...]] = {
    "histogram": ("hist", "hist_lo", "hist_hi"),
    "saturation": ("saturated", "zero"),
    "dead": ("dead",),
    "gradients": ("act_grad_norm", "grad_factor", "weight_grad_norm"),
    "glorot": ("glorot_forward", "glorot_backward"),
    "updates": ("update_ratio",),
    "sign_coherence": ("sign_coherence",),
    "distinct_units": ("distinct_units",),
}
"""The built-in statistics a probe can be asked for (``watch(model, stats=[...])``), each with the
columns it fills. The moments (``act_mean``, ``act_std``, ``in_mean``, ``in_std``,
``input_mean_over_std``) are always computed: every other statistic is read beside them."""

TENSORS = ("input", "pre_activation", "activation", "activation_grad", "weight_grad")


@dataclass(frozen=True)
class Statistic:
    """A statistic of the user's own, computed by the probe on every sampled step of every layer row
    and reported as a column without touching the probe: ``fn`` maps one of the layer's tensors
    (``of``: its ``input`` x, ``pre_activation`` z, ``activation`` h, ``activation_grad`` dL/dh or
    ``weight_grad`` dL/dW) to a scalar tensor, and the column ``name`` is its mean over the window's
    sampled steps. ``fn`` runs without gradients and should stay on the device (no ``.item()``), so
    the probe adds it into a buffer and reads it back once per window.

        >>> kurtosis = Statistic("act_kurtosis", "activation",
        ...                      lambda h: ((h - h.mean()) ** 4).mean() / h.var() ** 2)
    """

    name: str
    of: str
    fn: Callable[[Tensor], Tensor]

    def __post_init__(self):
        if self.of not in TENSORS:
            raise ValueError(f"Statistic {self.name!r}: of={self.of!r} must be one of {', '.join(TENSORS)}")
        if not self.name.isidentifier():
            raise ValueError(f"Statistic name {self.name!r} must be an identifier (it becomes a column)")


def choose(chosen) -> tuple[frozenset[str], tuple[Statistic, ...]]:
    """``stats=`` of ``watch`` -> (the built-in groups, the user's statistics). None: every built-in."""
    if chosen is None:
        return frozenset(GROUPS), ()
    if isinstance(chosen, (str, Statistic)):
        chosen = [chosen]
    groups, custom = set(), []
    for c in chosen:
        if isinstance(c, Statistic):
            custom.append(c)
        elif c in GROUPS:
            groups.add(c)
        else:
            raise ValueError(f"unknown statistic {c!r}: built-in ones are {', '.join(GROUPS)}, or pass a Statistic")
    names = [c.name for c in custom]
    if len(set(names)) != len(names) or set(names) & {col for cols in GROUPS.values() for col in cols}:
        raise ValueError(f"statistic names {names} must be distinct and not a built-in column")
    return frozenset(groups), tuple(custom)
