"""The contract every statistic of the probes passes (STYLE.md, principle 8), one suite over all of them:

- fed random tensors at its tap, its columns (or, for a statistic whose columns another reads, its named
  state) match a plain float64 reference written here with numpy, independently of ``stats.py``;
- two windows' states merged by each state's rule equal one window over both (sums add, flags or);
- split over two ranks (each with half of the batch, its gradients W times the global batch's, as each
  rank's mean loss gives them) and reduced by ``ranks.reduce`` through a group of threads that
  all-reduce as torch.distributed does, it gives the single process's numbers;
- closing a window resets it: every scalar state reads 0, every tensor state is gone (a flag is zeroed).

Adding a statistic is one record in ``builtin`` (or a row kind's file) and one line in ``REFERENCE``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from gradientflow.activations import CATALOG
from gradientflow.layers import Layer
from gradientflow.probes import builtin, ranks
from gradientflow.probes.rows import ActivationRow
from gradientflow.probes.rows.gates import GATE_VALUES, HIDDEN_STATES, TIME
from gradientflow.probes.rows.heads import HEADS
from gradientflow.probes.state import (ACT, ACT_GRAD, CALL, GATES, INPUT, INPUT_GRAD, LOGITS, PRE, PRE_GRAD, STATES,
                                       TIME_GRAD, UPDATE, WEIGHT_GRAD, Context, Seen)
from gradientflow.probes.stats import Statistic
from gradientflow.probes.sums import Sums

N, UNITS, FAN, HEADS_N, L, S, T, HIDDEN, BINS, WORLD = 8, 6, 16, 2, 3, 4, 4, 3, 10, 2
LSTM = torch.nn.LSTM(2, HIDDEN, bidirectional=True)  # two (layer, direction) rows; only its shape is read
SAT_TANH = np.arctanh(np.sqrt(0.95))  # |tanh'(z)| = 1 - tanh(z)^2 < 5% of its maximum 1 (C1)
SAT_SIGMOID = np.log((1 + np.sqrt(0.95)) / (1 - np.sqrt(0.95)))  # sigma (1 - sigma) < 5% of its maximum 1/4


def _bundle(g: torch.Generator) -> dict:
    """One step's tensors at every tap, for the global batch of N samples."""
    z = 2 * torch.randn(N, UNITS, generator=g)
    z[:, 0] = -z[:, 0].abs() - 0.1  # a unit a ReLU never lets through
    before = torch.randn(UNITS, FAN, generator=g)
    weight_grad = torch.randn(UNITS, FAN, generator=g)
    weight_grad[1] = weight_grad[1].abs()  # a unit whose gradient entries share one sign
    logits = torch.randn(N, HEADS_N, L, S, generator=g) * torch.tensor([1.0, 12.0]).reshape(1, 2, 1, 1)
    logits[:, :, 0, -1] = -torch.inf  # a masked key
    return {"x": torch.randn(N, FAN, generator=g) + 0.3, "z": z, "gx": torch.randn(N, FAN, generator=g) / N,
            "gz": torch.randn(N, UNITS, generator=g) / N, "gh": torch.randn(N, UNITS, generator=g) / N,
            "weight_grad": weight_grad, "before": before, "after": before + 0.1 * torch.randn(UNITS, FAN, generator=g),
            "logits": logits, "gates": 3 * torch.randn(2, T, N, 4 * HIDDEN, generator=g),
            "states": torch.randn(2, T, N, HIDDEN, generator=g), "time": torch.randn(2, T, N, HIDDEN, generator=g) / N}


GRADIENTS = ("gx", "gz", "gh", "time")  # per-sample gradients of a mean loss: a rank's are W times the global's


def _part(b: dict, rank: int) -> dict:
    """Rank ``rank``'s share of a step: half of the batch; the weights and their gradient are the same on every rank."""
    half = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
    dims = {"x": 0, "z": 0, "gx": 0, "gz": 0, "gh": 0, "logits": 0, "gates": 2, "states": 2, "time": 2}
    out = dict(b)
    for key, dim in dims.items():
        index = [slice(None)] * b[key].dim()
        index[dim] = half
        out[key] = b[key][tuple(index)] * (WORLD if key in GRADIENTS else 1)
    return out


def _seen(tap: str, b: dict, act: str) -> Seen | None:
    f = CATALOG[act]
    return {
        CALL: None, INPUT: Seen(b["x"]), PRE: Seen(b["z"]), ACT: Seen(f(b["z"]), z=b["z"]),
        ACT_GRAD: Seen(b["gh"]), PRE_GRAD: Seen(b["gz"]), INPUT_GRAD: Seen(b["gx"]),
        WEIGHT_GRAD: Seen(b["weight_grad"]), UPDATE: Seen(b["after"], z=b["before"]), LOGITS: Seen(b["logits"]),
        GATES: Seen(list(b["gates"])), STATES: Seen([list(row) for row in b["states"]]),
        TIME_GRAD: Seen(torch.linalg.vector_norm(b["time"], dim=(2, 3)).double()),
    }.get(tap)


EXTRA = {"nonfinite": (builtin.INPUT_MOMENTS, builtin.ACT_MOMENTS, builtin.PRE_MOMENTS, builtin.ACT_GRAD_MOMENTS)}
"""What a statistic reads besides its ``needs`` (the nonfinite flags read every moment's)."""


def _row(stat, act: str, ctx: Context) -> ActivationRow:
    stats = []
    for s in (builtin.CALLS, *stat.needs, *EXTRA.get(stat.name, ()), stat):
        if s not in stats:
            stats.append(s)
    record = CATALOG[act]
    weight = torch.randn(UNITS, FAN, generator=torch.Generator().manual_seed(3))
    weight[4] = weight[2]  # two units that are copies of each other (C14)
    layer = Layer("r", torch.nn.Linear(FAN, UNITS), None, record)
    with torch.no_grad():
        layer.module.weight.copy_(weight)
        layer.module.bias.zero_()
    row = ActivationRow("r", ctx, tuple(stats), unit_dim=-1, nonlinear=True, saturated_region=record.saturated_region(),
                        dead_region=record.dead_region(), hist_range=record.output_range(), layer=layer)
    row.module = LSTM
    return row


def _window(stat, bundles: list[dict], act: str, ctx: Context | None = None, reduce=False) -> ActivationRow:
    ctx = ctx or Context(Sums(torch.device("cpu")), BINS, exact=True)
    ctx.active = ctx.heavy = True
    row = _row(stat, act, ctx)
    for step, b in enumerate(bundles, 1):
        ctx.sums.step = step
        for s in row.stats:
            s.add(row, _seen(s.tap, b, act))
        ctx.sums.settle()
    if reduce:
        ranks.reduce([row], ctx.sums, WORLD, ctx.collective)
    row.read(ctx.sums.read(), ctx.sums.read_first_bad())
    row.steps = row.values["n"][0]
    return row


def _result(stat, row) -> dict:
    """The stat's columns; for a statistic whose state only others read, that state (as numbers)."""
    out = dict(stat.columns(row))
    if not out:
        for state in stat.states:
            v = row.values[state.name]
            out[state.name] = v.tolist() if isinstance(v, torch.Tensor) else v
    return out


# --- the references: plain numpy over the window's global tensors ---

def _np(bundles, key) -> np.ndarray:
    return np.stack([b[key].double().numpy() for b in bundles])


def _f(act: str, z: np.ndarray) -> np.ndarray:
    return {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[act](z)


def _saturated(act: str, z: np.ndarray) -> np.ndarray:
    return {"tanh": np.abs(z) >= SAT_TANH, "relu": z <= 0, "sigmoid": np.abs(z) >= SAT_SIGMOID}[act]


def _moments(t: np.ndarray) -> list[float]:
    return [t.sum(), (t * t).sum(), t.size]


def _hist(bundles, act):
    h = _f(act, _np(bundles, "z"))
    lo, hi = CATALOG[act].output_range()
    hi = hi if hi is not None else 1.5 * np.abs(h[0]).max()
    return {"hist": np.histogram(np.clip(h, lo, hi), BINS, (lo, hi))[0].tolist(), "hist_lo": lo, "hist_hi": hi}


def _sign(bundles):
    g = _np(bundles, "weight_grad")
    pos, neg = (g > 0).sum(-1), (g < 0).sum(-1)
    return {"sign_coherence": (np.maximum(pos, neg) / (pos + neg)).mean()}


def _heads(bundles):
    out = []
    for h in range(HEADS_N):
        lg = _np(bundles, "logits")[:, :, h].reshape(-1, S)  # every query of head h
        w = np.exp(lg - lg.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        entropy = -(w * np.log(np.clip(w, 1e-30, None))).sum(-1)
        finite = lg[np.isfinite(lg)]
        out.append({"head": h, "attn_entropy": entropy.mean(), "attn_collapsed": (w.max(-1) > 0.99).mean(),
                    "attn_logit_std": finite.std()})
    return {"per_head": out}


def _gates(bundles):
    pre = _np(bundles, "gates")  # steps, rows, T, N, 4H
    fns = ("sigmoid", "sigmoid", "tanh", "sigmoid")
    sums = [[[*_moments(_f(fn, pre[:, r, ..., g * HIDDEN:(g + 1) * HIDDEN])),
              _saturated(fn, pre[:, r, ..., g * HIDDEN:(g + 1) * HIDDEN]).sum()] for g, fn in enumerate(fns)]
            for r in range(2)]
    return {"gates": sums, "steps": [len(bundles)]}


def _first_bad(bundles, keys) -> float:
    """The first step (from 1) at which any of ``keys`` held an inf or NaN; NaN when none did."""
    bad = [k for k, b in enumerate(bundles, 1) if any(not np.isfinite(b[key].numpy()).all() for key in keys)]
    return float(bad[0]) if bad else float("nan")


def _var(t):
    return t.var()


REFERENCE = {  # statistic -> (activation, window -> what it must give)
    "calls": ("tanh", lambda bs: {"n": [len(bs)]}),
    "h_moments": ("tanh", lambda bs: {"act_mean": np.tanh(_np(bs, "z")).mean(), "act_std": np.tanh(_np(bs, "z")).std()}),
    "x_moments": ("tanh", lambda bs: {"in_mean": _np(bs, "x").mean(), "in_std": _np(bs, "x").std(),
                                      "input_mean_over_std": abs(_np(bs, "x").mean()) / _np(bs, "x").std()}),
    "z_moments": ("tanh", lambda bs: {"z": _moments(_np(bs, "z"))}),
    "gh_moments": ("tanh", lambda bs: {"act_grad_norm": np.sqrt((_np(bs, "gh") ** 2).sum() / len(bs))}),
    "gx_moments": ("tanh", lambda bs: {"gx": _moments(_np(bs, "gx"))}),
    "gz_moments": ("tanh", lambda bs: {"glorot_forward": _var(_np(bs, "z")) / _var(_np(bs, "x")),
                                       "glorot_backward": _var(_np(bs, "gx")) / _var(_np(bs, "gz"))}),
    "shares": ("tanh", lambda bs: {"saturated": _saturated("tanh", _np(bs, "z")).mean(), "zero": 0.0}),
    "shares:relu": ("relu", lambda bs: {"saturated": (_np(bs, "z") <= 0).mean(), "zero": (_np(bs, "z") <= 0).mean()}),
    "dead": ("relu", lambda bs: {"dead": (~(_np(bs, "z") > 0).any((0, 1))).mean()}),
    "dead:tanh": ("tanh", lambda bs: {"dead": 0.0}),
    "histogram": ("tanh", lambda bs: _hist(bs, "tanh")),
    "histogram:relu": ("relu", lambda bs: _hist(bs, "relu")),
    "weight_grad_norm": ("tanh", lambda bs: {"weight_grad_norm": np.sqrt((_np(bs, "weight_grad") ** 2).sum((1, 2)).mean())}),
    "sign_coherence": ("tanh", _sign),
    "update_ratio": ("tanh", lambda bs: {"update_ratio": np.mean([np.linalg.norm(b["after"] - b["before"]) /
                                                                  np.linalg.norm(b["before"]) for b in bs])}),
    "distinct_units": ("tanh", lambda bs: {"distinct_units": UNITS - 1}),
    "attention": ("tanh", _heads),
    "gates": ("tanh", _gates),
    "hidden_states": ("tanh", lambda bs: {"states": [_moments(_np(bs, "states")[:, r]) for r in range(2)]}),
    "time_grad": ("tanh", lambda bs: {"time_sq": (np.linalg.norm(_np(bs, "time"), axis=(3, 4)) ** 2).sum(0).tolist(),
                                      "time_n": [float(len(bs))] * T}),
    "nonfinite": ("tanh", lambda bs: {"nonfinite_step": _first_bad(bs, ("x", "z")),
                                      "nonfinite_grad_step": _first_bad(bs, ("gh",))}),
    "act_l1": ("tanh", lambda bs: {"act_l1": np.mean([np.abs(np.tanh(b["z"].double().numpy())).mean() for b in bs])}),
}

L1 = Statistic("act_l1", "activation", lambda h: h.abs().mean())
STATS = {s.name: s for s in (*builtin.LAYER, *builtin.ACTIVATION, HEADS, GATE_VALUES, HIDDEN_STATES, TIME)}
STATS["act_l1"] = builtin.custom(L1)
CASES = [(name, stat, act) for name, stat in STATS.items() for key, (act, _) in REFERENCE.items()
         if key.split(":")[0] == name]
REDUCED = [c for c in CASES if c[0] not in ("act_l1", "nonfinite")]  # a user's statistic is averaged over the
# ranks as it is; the first non-finite step is each rank's own


def _windows(seed: int, k: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [_bundle(g) for _ in range(k)]


def _close(got, want, where):
    if isinstance(want, dict):
        for key, w in want.items():
            _close(got[key], w, f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    elif want is None:
        assert got is None, (where, got)
    elif isinstance(want, float) and np.isnan(want):
        assert isinstance(got, float) and np.isnan(got), (where, got)
    else:
        assert got == pytest.approx(float(want), rel=2e-5, abs=1e-9), (where, got, want)


def test_every_statistic_has_a_reference():
    assert {name for name, _, _ in CASES} == set(STATS)


@pytest.mark.parametrize("name,stat,act", CASES, ids=[f"{n}-{a}" for n, _, a in CASES])
def test_a_statistic_matches_its_plain_reference(name, stat, act):
    bundles = _windows(0, 3)
    key = next(k for k, (a, _) in REFERENCE.items() if k.split(":")[0] == name and a == act)
    _close(_result(stat, _window(stat, bundles, act)), REFERENCE[key][1](bundles), name)


@pytest.mark.parametrize("name,stat,act", CASES, ids=[f"{n}-{a}" for n, _, a in CASES])
def test_two_windows_merged_equal_one_window_over_both(name, stat, act):
    a, b = _windows(1, 2), _windows(2, 3)
    first, second, both = _window(stat, a, act), _window(stat, b, act), _window(stat, a + b, act)
    for s in stat.states:
        x, y, xy = first.values[s.name], second.values[s.name], both.values[s.name]
        if s.name == "hist" and act == "relu":
            continue  # its range is fixed by the first window it sees: windows after it share that range
        if xy is None:
            assert x is None and y is None, s.name
        elif isinstance(xy, torch.Tensor):
            merged = (x | y) if s.op == "max" else x + y
            assert torch.allclose(merged.double(), xy.double(), rtol=1e-5), s.name
        else:
            assert np.add(x, y) == pytest.approx(xy, rel=1e-6), s.name


@pytest.mark.parametrize("name,stat,act", REDUCED, ids=[f"{n}-{a}" for n, _, a in REDUCED])
def test_reduced_across_ranks_it_gives_the_single_process_numbers(name, stat, act):
    bundles = _windows(4, 3)
    group, results = _Group(WORLD), {}

    def rank(r):
        ctx = Context(Sums(torch.device("cpu")), BINS, exact=True, collective=group.for_rank(r))
        results[r] = _result(stat, _window(stat, [_part(b, r) for b in bundles], act, ctx, reduce=True))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(WORLD)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    single = _result(stat, _window(stat, bundles, act))
    for r in range(WORLD):
        assert r in results, f"rank {r} failed"
        _close(results[r], single, f"{name} rank {r}")


@pytest.mark.parametrize("name,stat,act", CASES, ids=[f"{n}-{a}" for n, _, a in CASES])
def test_closing_a_window_resets_its_state(name, stat, act):
    row = _window(stat, _windows(5, 2), act)
    row.ctx.sums.zero()
    row.zero()
    row.read(row.ctx.sums.read())
    for s in row.specs.values():
        v = row.values[s.name]
        if s.size:
            assert v == [0.0] * s.size, s.name
        else:
            assert v is None or (s.op == "max" and not v.any()), s.name


def test_the_first_non_finite_step_is_found_forward_and_backward():
    """An inf planted in z at step 2 and a NaN in dL/dh at step 3 are found at those steps (kept after)."""
    bundles = _windows(6, 4)
    bundles[1]["z"][0, 0] = torch.inf
    bundles[2]["gh"][1, 2] = torch.nan
    row = _window(builtin.NONFINITE, bundles, "tanh")
    want = REFERENCE["nonfinite"][1](bundles)
    assert want == {"nonfinite_step": 2.0, "nonfinite_grad_step": 3.0}
    _close(builtin.NONFINITE.columns(row), want, "planted")


def test_the_contract_fails_on_a_doctored_statistic():
    """A statistic that drifts by one part in a thousand fails its reference."""
    stat = builtin.ACT_MOMENTS
    bundles = _windows(0, 3)
    got = _result(stat, _window(stat, bundles, "tanh"))
    got["act_std"] *= 1.001
    with pytest.raises(AssertionError):
        _close(got, REFERENCE["h_moments"][1](bundles), "doctored")


class _Group:
    """Ranks as threads: ``for_rank(r)`` is rank r's all-reduce, which waits for every rank as a collective does."""

    def __init__(self, world: int):
        self.world, self.barrier, self.slots = world, threading.Barrier(world, timeout=30), [None] * world

    def for_rank(self, r: int):
        def all_reduce(t: torch.Tensor, maximum: bool = False) -> None:
            self.slots[r] = t.clone()
            self.barrier.wait()
            stacked = torch.stack(self.slots)
            result = stacked.amax(0) if maximum else stacked.sum(0)
            self.barrier.wait()
            t.copy_(result)
        return all_reduce


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_distinct_rows_counts_exact_copies_as_numpy_does(dtype):
    """The count against numpy's own exact unique over rows: copies planted, -0.0 beside 0.0
    (equal values), rows one ulp apart (distinct), with and without a bias column."""
    from gradientflow.probes import stats

    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=g).to(dtype)
    w[5], w[9], w[11] = w[3], w[3], w[7]  # two groups of copies
    w[12] = w[3].clone()
    w[12, 0] = -w[12, 0] if w[3, 0] == 0 else torch.nextafter(w[3, 0].float(), torch.tensor(1e9)).to(dtype)
    w[20], w[21] = 0.0, -0.0  # equal values, different bits
    b = torch.randn(40, generator=g).to(dtype)
    b[5], b[9], b[11], b[21] = b[3], b[3] + 1, b[7], b[20]  # row 9 differs from row 3 by its bias only
    for bias in (None, b):
        both = w if bias is None else torch.cat([w, bias[:, None]], 1)
        expected = len(np.unique(both.double().numpy() + 0.0, axis=0))
        assert stats.distinct_rows(w, bias) == expected
    assert stats.distinct_rows(torch.zeros(16, 8, dtype=dtype), torch.zeros(16, dtype=dtype)) == 1  # C14


def test_distinct_rows_compares_whole_rows_that_share_their_first_value():
    from gradientflow.probes import stats

    w = torch.randn(10, 4)
    w[:, 0] = 1.0  # every row shares its first value: each is compared whole
    w[1] = w[0]
    assert stats.distinct_rows(w) == 9
    assert stats.distinct_rows(w, torch.arange(10.0)) == 10
