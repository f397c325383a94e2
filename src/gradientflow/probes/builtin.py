"""The built-in statistics of layer and activation rows, each one small record (``Stat``).

A ``Stat`` names the tap it reads (``state.INPUT``, ...), its named state with each piece's rule
for the reduction across ranks, how a tensor seen at the tap adds to that state on the device, and
the columns it gives when a window closes (from the row's ``values``, read back once per window).
Adding a statistic is one record here, listed in ``LAYER`` and/or ``ACTIVATION``, and one line of
the contract test (``tests/test_probe_stats.py``). A user's ``stats.Statistic`` becomes a record
too (``custom``).

Columns of ``summary()`` (one row per layer, in forward order), pooled over the window's sampled
steps; x is the layer's input, z = W x + b its output (the pre-activation), h = f(z):

- ``act_mean``, ``act_std``: of h; ``hist``: counts of h in ``bins`` fixed bins over
  [``hist_lo``, ``hist_hi``] (the activation's range where bounded, else fixed at the first step),
  from an evenly strided sample of at most ``HIST_SAMPLE`` values per layer and step (a full
  histogram of a 256 x 500 layer costs torch's CPU kernels more than the layer's matmul);
- ``saturated``: share of z in the activation's saturated region (|f'| < 5% of its max; C1, C15);
- ``zero``: share of h exactly 0 (both shares, and the histogram, from ``SHARE_ROWS`` strided samples
  of the batch unless ``exact``; the histogram and ``sign_coherence`` on the first sampled step of
  each window and every ``update_every``-th); ``dead``: share of units whose z stayed in the activation's
  zero-slope region for every sample of the window (C7; 0 for activations whose slope is never
  exactly 0, NaN without an activation);
- ``input_mean_over_std``: |mean x| / std x, how far the inputs are from zero-centred (C4, C19);
  ``in_mean``, ``in_std``: of x (for a normalisation row, of what it normalises);
- ``weight_grad_norm``: RMS over steps of ||dL/dW||; ``act_grad_norm``: RMS of ||dL/dh||;
  ``grad_factor``: this layer's ``act_grad_norm`` over the next layer's (C2, C3);
- ``glorot_forward`` = Var z / Var x and ``glorot_backward`` = Var(dL/dx) / Var(dL/dz): the two
  conditions of Glorot & Bengio (2010), eqs. 10-11, both 1 when the layer keeps the variance (C18);
- ``update_ratio``: ||W_t - W_{t-1}|| / ||W_{t-1}|| over one step, measured once every
  ``update_every`` sampled steps (it needs a copy of the weights, so it is sampled more sparsely);
  for an embedding table, over the rows the step changed;
- ``sign_coherence``: mean over units of the share of the unit's weight-gradient entries with the
  majority sign (C4's zig-zag: 1.0 for a layer fed by sigmoid outputs at batch size 1), averaged
  over at most ``SIGN_UNITS`` evenly spaced units per step (NaN for units of fewer than
  ``SIGN_MIN_FAN`` weights);
- ``distinct_units``: units that are not exact copies of another, read at the flush (C14);
- ``nonfinite_step``, ``nonfinite_grad_step``: the first step at which the row's x, z or h, or its
  dL/dh, dL/dz, dL/dx or dL/dW, held an inf or NaN (NaN while they never did; kept across windows).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..activations import Maxout
from . import stats
from .ranks import max_over_ranks
from .state import (ACT, ACT_GRAD, CALL, INPUT, INPUT_GRAD, PRE, PRE_GRAD, UPDATE, WEIGHT, WEIGHT_GRAD, Row, Seen,
                    State)

HIST_SAMPLE = 8192  # values per row and step counted into the histogram (an evenly strided sample)
SIGN_UNITS = 64  # units per layer and step whose sign coherence is averaged
SIGN_MIN_FAN = 16  # the fewest weights per unit for which sign coherence is measured
SHARE_ROWS = 32  # samples of the batch per step on which the shares (saturated, zero) are counted

NAN = math.nan
GRADIENT = (1, 2, 0)  # a gradient's sums over W ranks: the first over W, the second over W^2, the count as is


@dataclass(frozen=True)
class Stat:
    """A statistic of a row: on when any of ``groups`` is asked for (``()``: always), it reads
    ``tap``, keeps ``states``, adds a seen tensor with ``add(row, seen)`` and gives ``columns(row)``,
    which may read the state of the statistics it ``needs``."""

    name: str
    groups: tuple[str, ...]
    tap: str
    states: tuple[State, ...]
    add: Callable[[Row, Seen], None]
    columns: Callable[[Row], dict] = lambda row: {}
    needs: tuple["Stat", ...] = ()


def _moments(name: str) -> Callable[[Row, Seen], None]:
    return lambda row, seen: row.add_moments(name, seen.moments())


def _var(m) -> float:
    return stats.pooled_mean_var(m)[1]


def _sampled(row: Row, t: Tensor) -> Tensor:
    return stats.sample_rows(t, None if row.ctx.exact else SHARE_ROWS)


def _act_columns(row: Row) -> dict:
    mean, var = stats.pooled_mean_var(row.values["h"])
    return {"act_mean": mean, "act_std": math.sqrt(var) if var == var else NAN}


def _input_columns(row: Row) -> dict:
    mean, var = stats.pooled_mean_var(row.values["x"])
    return {"input_mean_over_std": abs(mean) / math.sqrt(var) if var > 0 else NAN, "in_mean": mean,
            "in_std": math.sqrt(var) if var == var else NAN}


def _act_grad_columns(row: Row) -> dict:
    s, s2, n = row.values["gh"]
    return {"act_grad_norm": math.sqrt(s2 / row.steps) if n else NAN}


def _glorot_columns(row: Row) -> dict:
    """Glorot & Bengio (2010), eqs. 10-11: Var z / Var x and Var(dL/dx) / Var(dL/dz)."""
    v = row.values
    gx = _var(v["gx"]) if row.gx_from is None else _var(row.gx_from[0].values[row.gx_from[1]])
    ratio = lambda a, b: a / b if b > 0 else NAN  # noqa: E731
    return {"glorot_forward": ratio(_var(v["z"]), _var(v["x"])), "glorot_backward": ratio(gx, _var(v["gz"]))}


def _add_shares(row: Row, seen: Seen) -> None:
    h_rows = _sampled(row, seen.t)
    row.add("nonzero", torch.count_nonzero(h_rows))  # counts the non-zeros: zero = 1 - this / n
    row.add("nonzero", h_rows.numel(), 1)
    if seen.z is not None and row.saturated_region:
        some = _sampled(row, seen.z)
        row.add("sat", stats.count_in_region(some, row.saturated_region))
        row.add("sat", some.numel(), 1)


def _share_columns(row: Row) -> dict:
    (sat, sat_n), (nonzero, n) = row.values["sat"], row.values["nonzero"]
    return {"saturated": sat / sat_n if row.saturated_region and sat_n else (0.0 if row.nonlinear else NAN),
            "zero": 1 - nonzero / n if n else NAN}


def _add_dead(row: Row, seen: Seen) -> None:
    """Every sample, not a strided few: one active sample keeps a unit alive (C7)."""
    if seen.z is None or not row.dead_region:
        return
    active = stats.units_active(seen.z, row.unit_dim, row.dead_region)
    alive = row.tensors["ever_active"]
    if alive is None:
        alive = row.tensors["ever_active"] = torch.zeros(active.shape[0], dtype=torch.bool, device=active.device)
    alive |= active


def _dead_columns(row: Row) -> dict:
    if not row.nonlinear:
        return {"dead": NAN}
    alive = row.values["ever_active"]
    return {"dead": 1.0 - alive.double().mean().item() if alive is not None else 0.0}


def _add_histogram(row: Row, seen: Seen) -> None:
    """On heavy steps; the range is the activation's where bounded, else fixed at the first such step."""
    if not row.ctx.heavy:
        return
    h = seen.t
    lo, hi = row.hist_range
    if lo is None or hi is None:
        spread = 1.5 * float(h.detach().abs().max()) or 1.0
        if row.ctx.collective is not None:  # one range on every rank, so that their counts add up
            spread = max_over_ranks(spread, h.device, row.ctx.collective)
        row.hist_range = (-spread if lo is None else lo, spread if hi is None else hi)
    row.accumulate("hist", stats.histogram(_sampled(row, h), *row.hist_range, row.ctx.bins, HIST_SAMPLE))


def _histogram_columns(row: Row) -> dict:
    hist = row.values["hist"]
    return {"hist_lo": row.hist_range[0], "hist_hi": row.hist_range[1],
            "hist": hist.tolist() if hist is not None else [0.0] * row.ctx.bins}


def _add_weight_grad(row: Row, seen: Seen) -> None:
    g = seen.t.reshape(-1)
    row.add("weight_grad", torch.dot(g, g))
    row.add("weight_grad", 1, 1)


def _add_sign(row: Row, seen: Seen) -> None:
    """On heavy steps, for units with at least ``SIGN_MIN_FAN`` weights (a depthwise 3 x 3 convolution's
    nine entries share a sign for reasons of their own: neighbouring pixels of one channel)."""
    if row.ctx.heavy and seen.t[0].numel() >= SIGN_MIN_FAN:
        row.add("sign", stats.sign_coherence(seen.t, SIGN_UNITS))
        row.add("sign", 1, 1)


def _add_update(row: Row, seen: Seen) -> None:
    """||W_t - W_{t-1}|| / ||W_{t-1}||, with ``seen.z`` the weights W_{t-1}."""
    row.add("update", (seen.t - seen.z).norm() / seen.z.norm().clamp(min=1e-30))
    row.add("update", 1, 1)


def _add_table_update(row: Row, seen: Seen) -> None:
    """An embedding table's ||W_t - W_{t-1}|| / ||W_{t-1}|| over the rows the step changed (a batch looks
    up a few rows of a large vocabulary: over the whole table the ratio would read as a stalled layer)."""
    change = (seen.t - seen.z).square().sum(1)
    before = seen.z.square().sum(1)
    row.add("update", (change.sum() / (before * (change > 0)).sum().clamp(min=1e-30)).sqrt())
    row.add("update", 1, 1)


def _mean_of(state: str, column: str, root: bool = False) -> Callable[[Row], dict]:
    def columns(row: Row) -> dict:
        s, n = row.values[state]
        return {column: (math.sqrt(s / n) if root else s / n) if n else NAN}
    return columns


def _distinct_columns(row: Row) -> dict:
    walked = row.layer
    bias = None if isinstance(walked.module, Maxout) else walked.bias
    return {"distinct_units": stats.distinct_rows(walked.weight, bias)}


def _first_bad(row: Row, states: tuple[str, ...]) -> float:
    return min((row.first_bad.get(s, math.inf) for s in states), default=math.inf)


def _nonfinite_columns(row: Row) -> dict:
    """The first step at which the row's forward values (x, z, h) and its gradients (dL/dh, dL/dz,
    dL/dx, dL/dW) held a non-finite number; NaN while they never did."""
    forward, backward = _first_bad(row, ("x", "z", "h")), _first_bad(row, ("gh", "gz", "gx", "weight_grad"))
    return {"nonfinite_step": forward if forward < math.inf else NAN,
            "nonfinite_grad_step": backward if backward < math.inf else NAN}


def _count(row: Row, seen: Seen) -> None:
    row.add("n", 1)


def moments(state: str, tap: str, groups=(), scale=(0,), columns=lambda row: {}, needs=()) -> Stat:
    """[sum t, sum t^2, n] of the tensor seen at ``tap``: its pooled mean and variance."""
    return Stat(f"{state}_moments", groups, tap, (State(state, 3, scale),), _moments(state), columns, needs)


CALLS = Stat("calls", (), CALL, (State("n", 1, (1,)),), _count)
ACT_MOMENTS = moments("h", ACT, columns=_act_columns)
INPUT_MOMENTS = moments("x", INPUT, columns=_input_columns)
ACT_GRAD_MOMENTS = moments("gh", ACT_GRAD, ("gradients", "glorot"), GRADIENT, _act_grad_columns, (CALLS,))
PRE_MOMENTS = moments("z", PRE, ("glorot",))
INPUT_GRAD_MOMENTS = moments("gx", INPUT_GRAD, ("glorot",), GRADIENT)
GLOROT = moments("gz", PRE_GRAD, ("glorot",), GRADIENT, _glorot_columns,
                 (PRE_MOMENTS, INPUT_MOMENTS, INPUT_GRAD_MOMENTS, ACT_GRAD_MOMENTS))
SHARES = Stat("shares", ("saturation",), ACT, (State("sat", 2), State("nonzero", 2)), _add_shares, _share_columns)
DEAD = Stat("dead", ("dead",), ACT, (State("ever_active", 0, op="max"),), _add_dead, _dead_columns)
HISTOGRAM = Stat("histogram", ("histogram",), ACT, (State("hist", 0),), _add_histogram, _histogram_columns)
WEIGHT_GRAD_NORM = Stat("weight_grad_norm", ("gradients",), WEIGHT_GRAD, (State("weight_grad", 2),), _add_weight_grad,
                        _mean_of("weight_grad", "weight_grad_norm", root=True))
SIGN_COHERENCE = Stat("sign_coherence", ("sign_coherence",), WEIGHT_GRAD, (State("sign", 2),), _add_sign,
                      _mean_of("sign", "sign_coherence"))
UPDATE_RATIO = Stat("update_ratio", ("updates",), UPDATE, (State("update", 2),), _add_update,
                    _mean_of("update", "update_ratio"))
TABLE_UPDATE_RATIO = Stat("update_ratio", ("updates",), UPDATE, (State("update", 2),), _add_table_update,
                          _mean_of("update", "update_ratio"))
DISTINCT = Stat("distinct_units", ("distinct_units",), WEIGHT, (), lambda row, seen: None, _distinct_columns)
NONFINITE = Stat("nonfinite", (), WEIGHT, (), lambda row, seen: None, _nonfinite_columns)

ACTIVATION = (CALLS, ACT_MOMENTS, INPUT_MOMENTS, ACT_GRAD_MOMENTS, SHARES, DEAD, HISTOGRAM, NONFINITE)
"""The statistics of a row without weights of its own (a function call, a normalisation layer)."""
LAYER = (CALLS, ACT_MOMENTS, INPUT_MOMENTS, PRE_MOMENTS, ACT_GRAD_MOMENTS, INPUT_GRAD_MOMENTS, GLOROT, SHARES, DEAD,
         HISTOGRAM, WEIGHT_GRAD_NORM, SIGN_COHERENCE, UPDATE_RATIO, DISTINCT, NONFINITE)
"""The statistics of a layer with weights."""
TABLE = (CALLS, WEIGHT_GRAD_NORM, TABLE_UPDATE_RATIO, NONFINITE)
"""The statistics of an embedding table: its gradient and its update (a lookup has no activation)."""

COLUMNS = ("act_mean", "act_std", "saturated", "zero", "dead", "input_mean_over_std", "in_mean", "in_std",
           "weight_grad_norm", "act_grad_norm", "glorot_forward", "glorot_backward", "update_ratio", "sign_coherence",
           "distinct_units", "hist_lo", "hist_hi", "hist", "nonfinite_step", "nonfinite_grad_step")
"""The columns of layer and activation rows, in their order (NaN where a row has no such statistic)."""


def custom(statistic: stats.Statistic) -> Stat:
    """A user's statistic: its mean over the window's sampled steps, as the column ``statistic.name``."""
    def add(row: Row, seen: Seen) -> None:
        value = statistic.fn(seen.t.detach())
        if not isinstance(value, Tensor) or value.numel() != 1:
            got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"Statistic {statistic.name!r} must return a one-element tensor on the device, got {got}")
        row.add(state, value.reshape(()))
        row.add(state, 1, 1)

    state = f"user:{statistic.name}"  # apart from the built-in states' names
    return Stat(statistic.name, (), statistic.of, (State(state, 2),), add, _mean_of(state, statistic.name))


def chosen(table: tuple[Stat, ...], groups: frozenset[str], users: tuple[stats.Statistic, ...]) -> tuple[Stat, ...]:
    """The records of ``table`` that ``groups`` turns on (with those they need), then the user's statistics."""
    on = {s for s in table if not s.groups or any(g in groups for g in s.groups)}
    on |= {need for s in on for need in s.needs}
    return (*(s for s in table if s in on), *map(custom, users))


def columns(row: Row, header: dict, users: tuple[stats.Statistic, ...]) -> dict:
    """A layer or activation row's columns: ``header``, then ``COLUMNS``, then the user's."""
    found: dict = {}
    for stat in row.stats:
        found.update(stat.columns(row))
    return {**header, **{c: found.get(c, NAN) for c in COLUMNS}, **{u.name: found[u.name] for u in users},
            "grad_factor": NAN}  # this row's act_grad_norm over the next one's, set when the window's rows are in order
