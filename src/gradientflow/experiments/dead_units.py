"""C7, C8, C9: ReLU units die at too high a learning rate; Leaky ReLU, PReLU and Maxout keep a gradient.

Three measured parts, each over seeds, on the same MNIST-1D net (4 x 100, plain SGD; He init for the
rectifiers, LeCun for Maxout, Xavier for tanh):

1. **The rate grid.** Every unit type trains on one absolute grid of rates shared by all of them, each
   (unit, rate) cell over several seeds, in the batched trainer. At the end of every epoch each hidden
   unit's *never active* flag is read on the training set: its pre-activation (Maxout: its output) is
   <= 0 on every input. The *dead share* of a run is the never-active share at the end minus at init,
   per layer and over the net. A cell is *judged* when its median test accuracy is within ``JUDGED`` of
   the unit's best cell and most of its seeds finish: those are rates a practitioner would keep. *Revival*:
   of the units never active half-way, the share active again at the end (reported, not judged: a ReLU
   unit gets no gradient itself, yet wakes when the layers below it move). *Convergence*: the steps until
   the training loss (a trailing mean over ``WINDOW`` steps) falls below ``THRESHOLD`` ln(classes), at each
   unit's own fastest rate (the rate of the fewest median steps), ReLU against tanh (Krizhevsky et al. 2012
   report ReLU nets reaching a training error six times faster than tanh nets).
2. **A large update.** The nets trained at ``BASE_RATE`` take one SGD step on one batch at ``KICK`` times
   that rate (a "large update", seed 001), then train one more epoch at ``BASE_RATE``. Measured: the share
   of units the step leaves never active (against the same step at 1x, the control) and, of those, the
   share still never active after the epoch.
3. **The gradient a never-active unit receives.** In the same trained nets, every other unit of the second
   hidden layer is switched off: its bias (Maxout: every piece's) lowered until the pre-activation is <= 0
   on every training input. The ratio of the switched units' gradient (the norm of dL/d(incoming weights
   and bias) over the training set, median over units) to the layer's other units', in the same net:
   f'(z) = 0 for ReLU on z <= 0, so exactly 0; f'(z) = alpha for Leaky ReLU where an active unit has 1
   (C8: "keeps a gradient for x < 0"), so of order alpha; Maxout passes the whole gradient to its
   largest piece, so of order 1 (C9: "no dead units").

    gradientflow reproduce --only C7,C8,C9 --quick --out DIR
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import job, layers, plots
from ..activations import Maxout
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..store import Run
from ..sweep import batched
from ..train import LoopSpec, fit
from . import claim
from .claim import Claim, Verdict
from .seeds import median_diverged_last, spread

CLAIMS = (
    Claim("C7", "ReLU max(0, x): no saturation for x > 0, faster convergence; a unit can 'die' (never active on any "
                "input) after a large update, and with too high a learning rate a large share of a network's units "
                "(the text says up to 40%) die.", "001, 002"),
    Claim("C8", "Leaky ReLU max(ax, x) with small a (0.01) keeps a gradient for x < 0; PReLU learns a per unit "
                "(He et al. 2015).", "001, 002"),
    Claim("C9", "Maxout max(w1^T x + b1, w2^T x + b2): ReLU and Leaky ReLU are special cases; no dead units; twice "
                "the parameters.", "002"),
)


class Size(claim.Size):
    train: TrainConfig  # the net and loop; activation, init, lr and seed are set per run
    rates: tuple[float, ...]  # the absolute rate grid every unit type trains on
    seeds: int  # runs per (unit, rate) cell


_MODEL, _SGD = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="sgd")
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=5, batch_size=32)),
             rates=tuple(0.05 * 2 ** k for k in range(6)), seeds=5)  # 0.05 ... 1.6, a factor 2 apart
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=20, batch_size=32)),
            rates=tuple(0.05 * 2 ** (k / 2) for k in range(11)), seeds=7)  # 0.05 ... 1.6, a factor sqrt(2) apart
UNITS = ("relu", "leaky_relu", "prelu", "maxout", "tanh")  # tanh: the convergence control
RECTIFIERS = UNITS[:4]
ALPHA = {"relu": 0.0, "leaky_relu": 0.01}  # the negative slope (PReLU's is learned from 0.25)
JUDGED = 0.05  # a cell is judged when its median test accuracy is within 5 points of the unit's best
SMALL_SHARE = 0.01  # at the rates that train well almost no unit dies
LARGE_SHARE = 0.1  # "a large share": a tenth of the units (the seeds say up to 40%)
THRESHOLD = 0.6  # convergence: the smoothed training loss below 0.6 ln(classes) (chance is 1.0 ln(classes))
WINDOW = 20  # steps in the trailing mean of the training loss
BASE_RATE = 0.1  # the large-update nets train here: within JUDGED of the best for every unit type
KICK = 20.0  # the large update: one step at 20 x BASE_RATE
ORDER = 10.0  # "of order alpha": the leaky gradient ratio within [alpha / 10, 10 alpha]
KEEPS = 0.1  # Maxout's switched-off units get at least a tenth of an active unit's gradient


def _init(act: str) -> str:
    return {"maxout": "lecun", "tanh": "xavier"}.get(act, "he")


def _pre_activations(net: nn.Module, x: torch.Tensor) -> tuple[list, list[torch.Tensor]]:
    """Hooks that collect each hidden layer's pre-activation (Maxout: its output) on the next forward."""
    seen, hooks = [], []
    for layer in layers.hidden(net, x[:2]):  # paired by data flow on a couple of rows
        if layer.activation_module is None:  # maxout: its output
            hooks.append(layer.module.register_forward_hook(lambda m, i, o: seen.append(o)))
        else:  # the pre-activation, where the activation's slope is decided
            hooks.append(layer.activation_module.register_forward_hook(lambda m, i, o: seen.append(i[0])))
    return hooks, seen


@torch.no_grad()
def never_active_by_layer(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer of ``net`` (``layers.hidden``, paired by data flow on ``x``): one flag per unit,
    never > 0 on any row of ``x``."""
    hooks, seen = _pre_activations(net, x)
    layers.forward_once(net, x, hooks)
    return [z.amax(0) <= 0 for z in seen]


def never_active(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``never_active_by_layer``'s flags, concatenated."""
    return torch.cat(never_active_by_layer(net, x))


class _Tracker:
    """The batched trainer's ``on_epoch``: each net's never-active flags per layer after every epoch."""

    def __init__(self, template: nn.Module, x: torch.Tensor):
        self.template, self.x, self.flags, self.final = template, x, [], None

    def __call__(self, epoch: int, weights: dict) -> None:
        k = next(iter(weights.values())).shape[0]
        nets = []
        for i in range(k):
            self.template.load_state_dict({n: w[i] for n, w in weights.items()})
            nets.append([f.clone() for f in never_active_by_layer(self.template, self.x)])
        self.flags.append(nets)  # [epoch][net][layer] -> flags
        self.final = {n: w.detach().clone() for n, w in weights.items()}


def steps_to(loss: list[float], level: float) -> int | None:
    """The first step at which the trailing mean of ``WINDOW`` losses is below ``level`` (None: never)."""
    values = np.asarray(loss, dtype=float)
    if len(values) < WINDOW:
        return None
    means = np.convolve(values, np.ones(WINDOW) / WINDOW, mode="valid")
    below = np.flatnonzero(means < level)
    return int(below[0] + WINDOW) if len(below) else None


def _net_record(summary, flags: list[list[torch.Tensor]], loss: list[float], level: float) -> dict:
    """One run: status, accuracy, never-active share per layer per epoch, dead share, revival, steps to the loss."""
    r = {"status": summary.status, "test_accuracy": summary.test_accuracy, "steps_to_loss": steps_to(loss, level)}
    if summary.status != "finished":
        return r
    shares = [[float(f.double().mean()) for f in epoch] for epoch in flags]  # [epoch][layer]
    start, mid, end = torch.cat(flags[0]), torch.cat(flags[len(flags) // 2]), torch.cat(flags[-1])
    r.update(shares=shares, dead_share=float(end.double().mean() - start.double().mean()),
             dead_by_layer=[b - a for a, b in zip(shares[0], shares[-1])],
             revived=float((mid & ~end).sum() / mid.sum()) if mid.any() else None)
    return r


def _grid(act: str, size: Size, seed: int, folder: Path) -> tuple[dict, dict]:
    """Every rate x seed of ``act`` in one batch: the cells, and the final weights of the nets at ``BASE_RATE``."""
    base = size.train.replace(activation=act, init=_init(act), data_seed=seed)
    cfgs = [base.replace(lr=lr, seed=seed + k) for lr in size.rates for k in range(size.seeds)]
    (folder / act).mkdir(parents=True, exist_ok=True)
    runs = [Run.create(folder / act / f"lr{c.lr:.4g}_seed{c.seed}", c.model_dump()) for c in cfgs]
    net, d = job.prepare(cfgs[0])
    tracker = _Tracker(net, d.x_train)
    summaries = batched.train(cfgs, runs=runs, on_epoch=tracker)
    level = THRESHOLD * math.log(d.classes)
    cells, kept = {}, {}
    for j, lr in enumerate(size.rates):
        seeds = []
        for k in range(size.seeds):
            i = j * size.seeds + k
            flags = [epoch[i] for epoch in tracker.flags]
            seeds.append(_net_record(summaries[i], flags, Run(runs[i].path).series("loss", "train")[1], level))
            if math.isclose(lr, BASE_RATE) and summaries[i].status == "finished":
                kept[seed + k] = {n: w[i] for n, w in tracker.final.items()}
        accuracy = [r["test_accuracy"] if r["status"] == "finished" else None for r in seeds]
        cells[f"{lr:.4g}"] = {
            "lr": lr, "seeds": seeds, "diverged": sum(r["status"] != "finished" for r in seeds),
            "accuracy": spread(accuracy).to_dict(), "dead": spread([r.get("dead_share") for r in seeds]).to_dict(),
            "revived": spread([r.get("revived") for r in seeds]).to_dict(),
            "steps_to_loss": _finite_or_none(median_diverged_last([r["steps_to_loss"] for r in seeds])),
            "dead_by_layer": [spread([r["dead_by_layer"][layer] for r in seeds if "dead_by_layer" in r]).median
                              for layer in range(base.depth)]}
    return cells, {"weights": kept, "level": level}


def _finite_or_none(v: float) -> float | None:
    """JSON has no infinity: a median of runs that never reach the loss is stored as None."""
    return v if math.isfinite(v) else None


def _steps(cell: dict) -> float:
    return math.inf if cell["steps_to_loss"] is None else cell["steps_to_loss"]


def _layer_units(net: nn.Module, x: torch.Tensor, which: int) -> tuple[nn.Module, nn.Linear, int]:
    """The ``which``-th hidden layer: its module, the Linear that feeds it and its pieces per unit."""
    layer = layers.hidden(net, x[:2])[which]
    if isinstance(layer.module, Maxout):
        return layer.module, layer.module.linear, layer.module.pieces
    return layer.module, layer.module, 1


def unit_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, which: int) -> torch.Tensor:
    """Per unit of hidden layer ``which``: the norm of dL/d(its incoming weights and bias) over (x, y)."""
    _, linear, pieces = _layer_units(net, x, which)
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    g = torch.cat([linear.weight.grad, linear.bias.grad[:, None]], 1)  # a row per piece
    net.zero_grad(set_to_none=True)
    return g.reshape(-1, pieces * g.shape[1]).norm(dim=1)


@torch.no_grad()
def switch_off(net: nn.Module, x: torch.Tensor, which: int, units: torch.Tensor) -> None:
    """Lower the biases of ``units`` of hidden layer ``which`` (Maxout: of every piece) until their
    pre-activation (Maxout: output) is <= 0 on every row of ``x``."""
    module, linear, pieces = _layer_units(net, x, which)
    hooks, seen = _pre_activations(net, x)
    layers.forward_once(net, x, hooks)
    top = seen[which].amax(0)[units]  # each unit's largest pre-activation (Maxout: output) on x
    bias = linear.bias.view(-1, pieces)
    bias[units] -= (top.clamp(min=0) + 1e-3)[:, None]


def gradient_kept(net: nn.Module, d, which: int = 1) -> float:
    """Switch off every other unit of hidden layer ``which``: the median gradient norm of those units over the
    median of the layer's other units, in the same net on the same data (``unit_gradients``, training set)."""
    units = torch.arange(0, _layer_units(net, d.x_train, which)[0].out_features, 2)
    switch_off(net, d.x_train, which, units)
    assert bool(never_active_by_layer(net, d.x_train)[which][units].all())
    grads = unit_gradients(net, d.x_train, d.y_train, which)
    others = torch.ones(len(grads), dtype=torch.bool)
    others[units] = False
    return float(grads[units].median() / grads[others].median())


def large_update(net: nn.Module, d, cfg: TrainConfig, factor: float, seed: int) -> dict:
    """One SGD step at ``factor`` x ``cfg.lr`` on one batch, then one epoch at ``cfg.lr``: the share of units
    the step leaves never active (that were not before), over the net and in the first hidden layer, and
    of those the share still never active after the epoch. A first-layer ReLU unit never active on the
    training set gets no gradient from any batch and sees the same inputs, so it cannot come back; a
    deeper one can, when the layers below it move."""
    before = never_active_by_layer(net, d.x_train)
    rows = torch.randperm(len(d.y_train), generator=torch.Generator().manual_seed(seed))[:cfg.batch_size]
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(d.x_train[rows]), d.y_train[rows]).backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= factor * cfg.lr * p.grad
    net.zero_grad(set_to_none=True)
    killed = [now & ~was for now, was in zip(never_active_by_layer(net, d.x_train), before)]
    again = cfg.replace(epochs=1, seed=seed + 1000)
    summary = fit(net, d, again.parts.optimizer, again.parts.loop)
    after = never_active_by_layer(net, d.x_train)

    def stay(k: list[torch.Tensor], a: list[torch.Tensor]) -> float | None:
        k, a = torch.cat(k), torch.cat(a)
        return float((k & a).sum() / k.sum()) if k.any() and summary.status == "finished" else None

    return {"killed": float(torch.cat(killed).double().mean()), "killed_first": float(killed[0].double().mean()),
            "stay": stay(killed, after), "stay_first": stay(killed[:1], after[:1]), "status": summary.status}


def _mechanisms(act: str, size: Size, kept: dict, data_seed: int) -> dict:
    """Parts 2 and 3 on the nets the grid trained at ``BASE_RATE`` (one per finished seed)."""
    out = {"kick": [], "control": [], "gradient_kept": [], "prelu_slope_change": []}
    for seed, weights in sorted(kept.items()):
        cfg = size.train.replace(activation=act, init=_init(act), data_seed=data_seed, seed=seed, lr=BASE_RATE)
        for key, factor in (("kick", KICK), ("control", 1.0)):
            net, d = job.prepare(cfg)
            net.load_state_dict(weights)
            out[key].append(large_update(net, d, cfg, factor, seed))
        net.load_state_dict(weights)
        if act == "prelu":
            slopes = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.PReLU)])
            out["prelu_slope_change"].append(float((slopes - 0.25).abs().max()))
        out["gradient_kept"].append(gradient_kept(net, d))
    return out


def run(size: Size, seed: int, folder) -> dict:
    folder = Path(folder)
    out = {"rates": list(size.rates), "units": {}, "special_cases": _special_cases(seed)}
    for act in UNITS:
        cells, trained = _grid(act, size, seed, folder)
        out["units"][act] = {"cells": cells}
        if act in RECTIFIERS:
            out["units"][act]["mechanisms"] = _mechanisms(act, size, trained["weights"], seed)
    out["loss_level"] = trained["level"]
    return out


def _special_cases(seed: int) -> dict:
    """Maxout with pieces (W, b), (0, 0) is ReLU; with (W, b), (aW, ab) it is Leaky ReLU; parameter counts."""
    g = torch.Generator().manual_seed(seed)
    layer, linear = Maxout(20, 30, pieces=2), nn.Linear(20, 30)
    x = torch.randn(256, 20, generator=g, dtype=torch.float64)
    w, b = torch.randn(30, 20, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    out = {"maxout_params": sum(p.numel() for p in layer.parameters()),
           "linear_params": sum(p.numel() for p in linear.parameters())}
    layer = layer.double()
    for name, alpha in (("relu", 0.0), ("leaky_relu", 0.01)):
        with torch.no_grad():
            layer.linear.weight.copy_(torch.stack([w, alpha * w], 1).reshape(60, 20))
            layer.linear.bias.copy_(torch.stack([b, alpha * b], 1).reshape(60))
        z = x @ w.T + b
        expected = torch.relu(z) if alpha == 0 else nn.functional.leaky_relu(z, alpha)
        with torch.no_grad():
            out[f"maxout_vs_{name}_max_abs_diff"] = float((layer(x) - expected).abs().max())
    return out


# --- the rules ---

def judged(cells: dict) -> list[dict]:
    """The cells a practitioner would keep: most seeds finish and the median test accuracy is within
    ``JUDGED`` of the best such cell's."""
    ok = [c for c in cells.values() if 2 * c["diverged"] < len(c["seeds"])]
    if not ok:
        return []
    best = max(c["accuracy"]["median"] for c in ok)
    return [c for c in ok if c["accuracy"]["median"] >= best - JUDGED]


def _median(values: list) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def summary(m: dict) -> dict:
    """The numbers the rules read, per unit type."""
    out = {}
    for act, unit in m["units"].items():
        cells = unit["cells"]
        keep = judged(cells)
        finishing = [c for c in cells.values() if 2 * c["diverged"] < len(c["seeds"])]
        worst = max(finishing, key=lambda c: c["dead"]["median"] if math.isfinite(c["dead"]["median"]) else -1.0)
        fastest = min(cells.values(), key=_steps)
        row = {"judged_rates": [c["lr"] for c in keep],
               "judged_dead_max": max((c["dead"]["median"] for c in keep), default=math.nan),
               "worst_dead_rate": worst["lr"], "worst_dead": worst["dead"]["median"],
               "worst_dead_range": [worst["dead"]["q10"], worst["dead"]["q90"]],
               "worst_dead_layer": max(worst["dead_by_layer"], default=math.nan),
               "worst_revived": worst["revived"]["median"],
               "fastest_rate": fastest["lr"], "steps_to_loss": _steps(fastest)}
        if "mechanisms" in unit:
            mech = unit["mechanisms"]
            row.update(killed=_median([r["killed"] for r in mech["kick"]]),
                       killed_control=_median([r["killed"] for r in mech["control"]]),
                       stay=_median([r["stay"] for r in mech["kick"]]),
                       killed_first=_median([r["killed_first"] for r in mech["kick"]]),
                       stay_first=_median([r["stay_first"] for r in mech["kick"]]),
                       gradient_kept=_median(mech["gradient_kept"]),
                       gradient_kept_range=[min(mech["gradient_kept"], default=math.nan),
                                            max(mech["gradient_kept"], default=math.nan)],
                       prelu_slope_change=_median(mech["prelu_slope_change"]))
        out[act] = row
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    s = summary(m)
    relu, leaky, prelu, maxout, tanh = (s[a] for a in UNITS)
    faster = relu["steps_to_loss"] < tanh["steps_to_loss"]
    too_high = (relu["judged_dead_max"] <= SMALL_SHARE and relu["worst_dead"] > SMALL_SHARE
                and relu["worst_dead_rate"] > max(relu["judged_rates"], default=math.inf))
    c7 = faster and too_high
    alpha = ALPHA["leaky_relu"]
    leaky_keeps = alpha / ORDER <= leaky["gradient_kept"] <= alpha * ORDER
    c8 = relu["gradient_kept"] == 0.0 and leaky_keeps and prelu["gradient_kept"] > 0.0 and \
        prelu["prelu_slope_change"] > 0.01
    sc = m["special_cases"]
    c9 = (maxout["gradient_kept"] >= KEEPS and maxout["judged_dead_max"] <= SMALL_SHARE
          and sc["maxout_vs_relu_max_abs_diff"] < 1e-12 and sc["maxout_vs_leaky_relu_max_abs_diff"] < 1e-12
          and sc["maxout_params"] == 2 * sc["linear_params"])
    numbers = {f"{a}.{k}": v for a, row in s.items() for k, v in row.items()}
    n = len(next(iter(m["units"]["relu"]["cells"].values()))["seeds"])
    rates = f"one rate grid for every unit ({m['rates'][0]:g} to {m['rates'][-1]:g}), {n} seeds per cell"
    steps = lambda v: "never" if not math.isfinite(v) else f"{v:.0f}"  # noqa: E731
    return {
        "C7": Verdict(
            c7, f"{rates}. Faster: ReLU's median steps until the training loss (trailing mean of {WINDOW}) is below "
                f"{THRESHOLD:g} ln(classes), at its fastest rate, are fewer than tanh's at tanh's. Too high a rate: at "
                f"the judged rates (median accuracy within {JUDGED:g} of the best, most seeds finishing) the median "
                f"dead share is <= {SMALL_SHARE:g} (the control), and the largest median dead share, over the rates where "
                f"most seeds finish, is above {SMALL_SHARE:g} at a rate above every judged one. Reported, not judged: "
                f"whether it reaches a large share ({LARGE_SHARE:.0%}; it depends on the seeds at the edge of "
                f"divergence), what one step at {KICK:g}x the rate {BASE_RATE:g} switches off, and how many units revive.",
            numbers, "dead_units",
            f"ReLU reaches the loss in {steps(relu['steps_to_loss'])} steps (rate {relu['fastest_rate']:.3g}) against "
            f"tanh's {steps(tanh['steps_to_loss'])}; at the judged rates {', '.join(f'{r:.3g}' for r in relu['judged_rates'])} "
            f"at most {max(relu['judged_dead_max'], 0.0):.1%} die; the most die at rate {relu['worst_dead_rate']:.3g}: "
            f"{relu['worst_dead']:.1%} of the net (median; {relu['worst_dead_layer']:.0%} of its worst layer), "
            f"{'a large share' if relu['worst_dead'] >= LARGE_SHARE else f'under the {LARGE_SHARE:.0%} of a large share'}"
            f" (seeds {relu['worst_dead_range'][0]:.1%}-{relu['worst_dead_range'][1]:.1%}; above this rate most runs "
            "diverge); "
            f"{_pct(relu['worst_revived'])} of the units never active half-way revive; one {KICK:g}x step switches off "
            f"{relu['killed']:.0%} of the units ({relu['killed_control']:.1%} at 1x), and {_pct(relu['stay'])} of them "
            "are still off an epoch later."),
        "C8": Verdict(
            c8, f"units switched off (pre-activation <= 0 on every training input) get this share of the gradient the "
                f"layer's other units get: "
                f"ReLU exactly 0; Leaky ReLU (alpha {alpha:g}) between alpha/{ORDER:g} and {ORDER:g} alpha (median over "
                f"seeds); PReLU above 0, and its slopes learned (median run moves one by more than 0.01 from 0.25). The "
                "share of units a large update kills and how many revive are reported against the slope.",
            numbers, "dead_units",
            f"switched-off units get {relu['gradient_kept']:.3g} of an active unit's gradient under ReLU, "
            f"{leaky['gradient_kept']:.3g} under Leaky ReLU (seeds {leaky['gradient_kept_range'][0]:.2g}-"
            f"{leaky['gradient_kept_range'][1]:.2g}) and {prelu['gradient_kept']:.3g} under PReLU (slopes moved "
            f"{prelu['prelu_slope_change']:.3g}); a {KICK:g}x step leaves never active {relu['killed']:.0%} (ReLU), "
            f"{leaky['killed']:.0%} (Leaky), {prelu['killed']:.0%} (PReLU), of which {relu['stay']:.0%}, "
            f"{_pct(leaky['stay'])}, {_pct(prelu['stay'])} stay so an epoch later."),
        "C9": Verdict(
            c9, f"Maxout's switched-off units (output <= 0 on every training input) get >= {KEEPS:g} of the gradient "
                f"the layer's other units get (median over seeds; ReLU's get 0); at its judged rates the median dead share is <= {SMALL_SHARE:g}; with pieces "
                "(W, b), (0, 0) it equals ReLU and with (W, b), (0.01 W, 0.01 b) Leaky ReLU (float64, to 1e-12); it holds "
                "exactly twice the parameters of a Linear layer of the same width.",
            {**numbers, **sc}, "dead_units",
            f"switched-off Maxout units get {maxout['gradient_kept']:.2g} of an active unit's gradient; at most "
            f"{maxout['judged_dead_max']:.1%} die at its judged rates; {sc['maxout_params']} parameters against "
            f"{sc['linear_params']}; ReLU as maxout differs by {sc['maxout_vs_relu_max_abs_diff']:.2g}."),
    }


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.0%}"


def figures(m: dict) -> dict:
    fig, axes = plots.subplots(1, 4, figsize=(20, 4.2))
    dead, acc, layer_ax, time_ax = axes
    rates = m["rates"]
    for k, act in enumerate(UNITS):
        cells = [m["units"][act]["cells"][f"{lr:.4g}"] for lr in rates]
        keep = {c["lr"] for c in judged(m["units"][act]["cells"])}
        for c in cells:
            for r in c["seeds"]:
                x = c["lr"] * (1 + 0.03 * (k - 2))
                if r["status"] == "finished":
                    dead.plot(x, 100 * r["dead_share"], "o", color=f"C{k}", ms=3, alpha=0.5)
                else:
                    dead.plot(x, -2, "x", color=f"C{k}", ms=5)
        dead.plot(rates, [100 * c["dead"]["median"] for c in cells], "-", color=f"C{k}", label=act)
        acc.plot(rates, [c["accuracy"]["median"] for c in cells], "-", color=f"C{k}", label=act)
        acc.plot([c["lr"] for c in cells if c["lr"] in keep], [c["accuracy"]["median"] for c in cells if c["lr"] in keep],
                 "o", color=f"C{k}", ms=5)
    relu = m["units"]["relu"]["cells"]
    for j, lr in enumerate(rates):
        layer_ax.plot(range(1, len(relu[f"{lr:.4g}"]["dead_by_layer"]) + 1),
                      [100 * v for v in relu[f"{lr:.4g}"]["dead_by_layer"]], "o-", color=plots.ramp(j, len(rates)),
                      label=f"{lr:.3g}")
    dead.axhline(100 * LARGE_SHARE, color="0.6", ls=":", lw=0.8)
    dead.set(xscale="log", xlabel="learning rate (SGD)", ylabel="% hidden units dead (end minus init)",
             title="C7-C9: dead share on one rate grid (dots: seeds; x: diverged)")
    acc.set(xscale="log", xlabel="learning rate", ylabel="median test accuracy",
            title="MNIST-1D accuracy (dots: the judged rates)")
    worst = summary(m)["relu"]["worst_dead_rate"]
    runs = [r for r in relu[f"{worst:.4g}"]["seeds"] if r["status"] == "finished"]
    if runs:
        by_epoch = np.median(np.asarray([r["shares"] for r in runs]), axis=0)  # [epoch, layer]
        for layer in range(by_epoch.shape[1]):
            time_ax.plot(range(by_epoch.shape[0]), 100 * by_epoch[:, layer], "o-", ms=3,
                         color=plots.ramp(layer, by_epoch.shape[1]), label=f"layer {layer + 1}")
        time_ax.legend(fontsize=7)
    time_ax.set(xlabel="epoch (0: init)", ylabel="% never active (median over seeds)",
                title=f"ReLU at rate {worst:.3g}: never-active share per layer over training")
    layer_ax.set(xlabel="hidden layer", ylabel="% dead (median over seeds)", title="ReLU: dead share per layer, by rate")
    dead.legend(fontsize=8)
    layer_ax.legend(fontsize=7, title="rate", title_fontsize=7)
    fig.tight_layout()
    return {"dead_units": fig}
