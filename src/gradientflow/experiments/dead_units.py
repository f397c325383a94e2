"""C7, C8, C9: ReLU units die at a high learning rate; Leaky ReLU, PReLU and Maxout do not.

The same MNIST-1D net (4 x 100, plain SGD) is trained for each unit type and seed at its own largest
stable learning rate (the edge: "too high a learning rate" short of divergence) and at fractions of
it (the control). The largest stable rate is found per seed by bisection in log rate: a rate is
stable when the run finishes (the NaN guard did not stop it) below chance loss ln(classes); the
bisection's last stable run is the run at the edge. Past the edge the runs diverge rather than
losing units, which is why the edge is found per seed: one rate for all seeds would put some seeds
past their edge (diverged) and others short of it.

A unit is *never active* when its pre-activation (for Maxout: its output) is <= 0 on every input of
a set; its *dead share* is the share of never-active units after training minus the share at init,
on the training set (the test set is read beside it). Every epoch the share is read again, so a unit
that is never active half-way through training is followed to the end: does it stay dead, or does
it recover? A ReLU unit that is never active gets no gradient; a leaky or PReLU unit keeps a slope
alpha there, a Maxout unit always passes the gradient to one piece.

Init: He for the rectifiers (with the leaky slope); LeCun (Var w = 1/fan_in) for Maxout, whose max of
two pieces keeps E[h^2] = E[z^2] and so would double the signal per layer under He. Quick size: about
a minute on one core.

    gradientflow reproduce --only C7,C8,C9 --quick --out DIR
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .. import job, layers, plots
from ..activations import Maxout
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..store import Run
from ..train import LoopSpec, Observer
from . import claim
from .claim import Claim, Verdict
from .seeds import spread

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
    fractions: tuple[float, ...]  # of each seed's own largest stable rate, below 1 (the edge itself is run too)
    seeds: int  # bisections (and so edges) per unit type
    search: tuple[float, float, int]  # the bisection's bracket of rates and its number of steps


_MODEL, _SGD = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="sgd")
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=5, batch_size=32)),
             fractions=(0.1, 0.5), seeds=3, search=(0.02, 5.0, 6))
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=20, batch_size=32)),
            fractions=(0.1, 0.3, 0.5, 0.7), seeds=5, search=(0.02, 5.0, 9))
EDGE = 1.0  # the fraction that names the run at each seed's own largest stable rate
UNITS = ("relu", "leaky_relu", "prelu", "maxout")
LARGE_SHARE = 0.1  # "a large share": at least a tenth of the units (the seeds say up to 40%)
SMALL_SHARE = 0.01  # at a tenth of the largest stable rate almost none die (the control)
STAY_DEAD = 0.5  # ReLU units never active half-way stay so: at least half of them at the end
FEWER = 0.25  # Leaky ReLU / PReLU "fix" dying when their edge dead share is under a quarter of ReLU's


def _init(act: str) -> str:
    return "lecun" if act == "maxout" else "he"


@torch.no_grad()
def never_active(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One flag per hidden unit of ``net`` (``layers.hidden``, paired by data flow on ``x``, concatenated):
    never > 0 on any row of ``x``."""
    flags, hooks = [], []
    for layer in layers.hidden(net, x[:2]):  # the flow needs a couple of rows
        if layer.activation_module is None:  # maxout: its output
            hooks.append(layer.module.register_forward_hook(lambda m, i, o: flags.append(o.amax(0) <= 0)))
        else:  # the pre-activation, where the activation's slope is decided
            hooks.append(layer.activation_module.register_forward_hook(lambda m, i, o: flags.append(i[0].amax(0) <= 0)))
    layers.forward_once(net, x, hooks)
    return torch.cat(flags)


class _EveryEpoch(Observer):
    """Reads the never-active flags on the training set at every checkpoint (the end of every epoch)."""

    def __init__(self, net: nn.Module, x: torch.Tensor):
        self.net, self.x, self.flags = net, x, []

    def flush(self, run, step: int) -> None:
        self.flags.append(never_active(self.net, self.x))


def _run(cfg: TrainConfig, folder: Path) -> dict:
    """Train ``cfg`` (stored in ``folder``): the never-active shares at init, per epoch and at the end (train and
    test), the dead share (end minus init), how many units never active half-way stay so, PReLU's slopes."""
    net, d = job.prepare(cfg)
    at_init = never_active(net, d.x_train)
    watch = _EveryEpoch(net, d.x_train)
    summary = job.train(cfg, net, d, run=Run.create(folder, cfg.model_dump()), observers=(watch,))
    r = {"status": summary.status, "train_loss": summary.train_loss, "test_accuracy": summary.test_accuracy,
         "classes": d.classes}
    if summary.status != "finished":
        return r
    mid, end = watch.flags[(len(watch.flags) - 1) // 2], watch.flags[-1]
    r.update(init_share=float(at_init.double().mean()), shares=[float(f.double().mean()) for f in watch.flags],
             test_share=float(never_active(net, d.x_test).double().mean()),
             dead_share=float(end.double().mean() - at_init.double().mean()),
             mid_dead=int(mid.sum()), stay_dead=float((mid & end).sum() / mid.sum()) if mid.any() else None)
    if cfg.activation == "prelu":
        slopes = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.PReLU)])
        r["prelu_slope_std"] = float(slopes.std())
        r["prelu_slope_max_change"] = float((slopes - 0.25).abs().max())
    return r


def _stable(r: dict) -> bool:
    return r["status"] == "finished" and r["train_loss"] < math.log(r["classes"])


def largest_stable_rate(base: TrainConfig, size: Size, folder: Path) -> dict:
    """Bisection in log rate on [lo, hi] (``size.search``) for ``base``'s seed: the largest rate whose run
    finishes below chance loss, the bisection's steps, and the run at that rate (the edge)."""
    lo, hi, steps = size.search
    trail, edge = [], None
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        r = _run(base.replace(lr=mid), folder / f"search_lr{mid:.4g}")
        ok = _stable(r)
        trail.append({"lr": mid, "stable": ok})
        if ok:
            lo, edge = mid, r
        else:
            hi = mid
    if edge is None:  # even the bracket's bottom is the edge: run it
        edge = _run(base.replace(lr=lo), folder / f"search_lr{lo:.4g}")
    return {"lr": lo, "search": trail, "edge": edge}


def run(size: Size, seed: int, folder) -> dict:
    folder = Path(folder)
    out = {"fractions": [*size.fractions, EDGE], "units": {}, "special_cases": _special_cases(seed)}
    for act in UNITS:
        base = size.train.replace(activation=act, init=_init(act), data_seed=seed)
        edges = []
        for k in range(size.seeds):
            (folder / act / f"seed{seed + k}").mkdir(parents=True)
            edges.append(largest_stable_rate(base.replace(seed=seed + k), size, folder / act / f"seed{seed + k}"))
        cells = {}
        for frac in out["fractions"]:
            seeds = [e["edge"] if frac == EDGE else
                     _run(base.replace(lr=frac * e["lr"], seed=seed + k), folder / act / f"seed{seed + k}" / f"f{frac:g}")
                     for k, e in enumerate(edges)]
            cells[f"{frac:g}"] = {"lr": [frac * e["lr"] for e in edges], "seeds": seeds,
                                  "diverged": sum(r["status"] != "finished" for r in seeds),
                                  "dead": spread([r.get("dead_share") for r in seeds]).to_dict(),
                                  "test": spread([r.get("test_share") for r in seeds]).to_dict(),
                                  "stay_dead": spread([r.get("stay_dead") for r in seeds]).to_dict()}
        out["units"][act] = {"largest_stable_rate": [e["lr"] for e in edges], "search": [e["search"] for e in edges],
                             "cells": cells}
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




def _median(m: dict, act: str, frac: float, what: str = "dead") -> float:
    return m["units"][act]["cells"][f"{frac:g}"][what]["median"]


def verdicts(m: dict) -> dict[str, Verdict]:
    fracs, units = m["fractions"], m["units"]
    low, top = fracs[0], EDGE
    relu_top, relu_low, relu_stay = _median(m, "relu", top), _median(m, "relu", low), _median(m, "relu", top, "stay_dead")
    c7 = relu_top >= LARGE_SHARE and relu_low <= SMALL_SHARE and relu_stay >= STAY_DEAD
    leaky_top, prelu_top = _median(m, "leaky_relu", top), _median(m, "prelu", top)
    slopes = [r.get("prelu_slope_max_change", 0.0) for c in units["prelu"]["cells"].values() for r in c["seeds"]
              if r["status"] == "finished"]
    prelu_moved = sorted(slopes)[len(slopes) // 2] if slopes else 0.0  # the median over runs
    c8 = leaky_top < FEWER * relu_top and prelu_top < FEWER * relu_top and prelu_moved > 0.01
    maxout = [_median(m, "maxout", f) for f in fracs]
    sc = m["special_cases"]
    c9 = (all(v <= SMALL_SHARE for v in maxout) and sc["maxout_vs_relu_max_abs_diff"] < 1e-12
          and sc["maxout_vs_leaky_relu_max_abs_diff"] < 1e-12 and sc["maxout_params"] == 2 * sc["linear_params"])
    rates = {a: sorted(units[a]["largest_stable_rate"])[len(units[a]["largest_stable_rate"]) // 2] for a in UNITS}
    diverged = {a: sum(c["diverged"] for c in units[a]["cells"].values()) for a in UNITS}
    runs = {a: sum(len(c["seeds"]) for c in units[a]["cells"].values()) for a in UNITS}
    at = lambda a: ", ".join(f"{_median(m, a, f):.1%} at {'the edge' if f == EDGE else f'{f:g}'}" for f in fracs)  # noqa: E731
    numbers = {**{f"{a}.largest_stable_rate_median": rates[a] for a in UNITS},
               **{f"{a}.dead_median@{f:g}": _median(m, a, f) for a in UNITS for f in fracs},
               **{f"{a}.dead_q10_q90@{top:g}": [units[a]["cells"][f"{top:g}"]["dead"][q] for q in ("q10", "q90")]
                  for a in UNITS},
               **{f"{a}.diverged_runs": f"{diverged[a]} of {runs[a]}" for a in UNITS},
               "relu.stay_dead_median": relu_stay, "prelu.slope_change_median": prelu_moved}
    fractions = (f"each seed's own largest stable rate (the edge) and fractions "
                 f"{', '.join(f'{f:g}' for f in fracs[:-1])} of it")
    return {
        "C7": Verdict(c7, f"dead share = never-active share after training minus at init, median over seeds, at "
                          f"{fractions}: >= {LARGE_SHARE:g} for ReLU at the edge, <= {SMALL_SHARE:g} at {low:g} of it (the "
                          f"control), and of the ReLU units never active half-way through an edge run, a median >= "
                          f"{STAY_DEAD:g} are still never active at the end (they die, not doze).", numbers, "dead_units",
                      f"ReLU (median largest stable rate {rates['relu']:.3g}) dead share {at('relu')}; {relu_stay:.0%} "
                      f"of the units never active half-way stay so; {diverged['relu']} of {runs['relu']} runs diverged."),
        "C8": Verdict(c8, f"at each seed's own edge, the median dead share of Leaky ReLU and of PReLU is under {FEWER:g} "
                          "of ReLU's (their negative slope keeps a gradient, so fewer units should be lost), and "
                          "PReLU's slopes are learned: the median run moves some slope by more than 0.01 from 0.25.",
                      numbers, "dead_units",
                      f"dead share at the edge: ReLU {relu_top:.1%}, Leaky ReLU {leaky_top:.1%}, PReLU {prelu_top:.1%}; "
                      f"PReLU slopes moved up to {prelu_moved:.3g} (median run)."),
        "C9": Verdict(c9, f"Maxout: the median dead share (never-active outputs) is <= {SMALL_SHARE:g} at every fraction; "
                          "with pieces (W, b), (0, 0) it equals ReLU and with (W, b), (0.01 W, 0.01 b) Leaky ReLU (float64, "
                          "to 1e-12); it holds exactly twice the parameters of a Linear layer of the same width.",
                      {**numbers, **sc}, "dead_units",
                      f"Maxout dead share {at('maxout')}; {sc['maxout_params']} parameters against "
                      f"{sc['linear_params']}; ReLU as maxout differs by {sc['maxout_vs_relu_max_abs_diff']:.2g}."),
    }


def figures(m: dict) -> dict:
    fig, (left, right) = plots.subplots(1, 2, figsize=(12, 4))
    fracs = m["fractions"]
    for k, act in enumerate(UNITS):
        cells = m["units"][act]["cells"]
        for j, f in enumerate(fracs):
            for r in cells[f"{f:g}"]["seeds"]:
                x = f * (1 + 0.03 * (k - 1.5))
                if r["status"] == "finished":
                    left.plot(x, 100 * r["dead_share"], "o", color=f"C{k}", ms=4, alpha=0.6)
                    right.plot(x, r["test_accuracy"], "o", color=f"C{k}", ms=4, alpha=0.6)
                else:
                    left.plot(x, -2, "x", color=f"C{k}", ms=6)
        rates = ", ".join(f"{r:.2g}" for r in m["units"][act]["largest_stable_rate"])
        left.plot(fracs, [100 * cells[f"{f:g}"]["dead"]["median"] for f in fracs], "-", color=f"C{k}",
                  label=f"{act} (edges {rates})")
    left.axhline(100 * LARGE_SHARE, color="0.6", ls=":", lw=0.8)
    left.set(xlabel="fraction of the seed's own largest stable learning rate (SGD)", ylabel="% hidden units dead",
             title="C7-C9: never active after training minus at init (dots: seeds; x: diverged)")
    right.set(xlabel="fraction of the seed's own largest stable learning rate", ylabel="test accuracy",
              title="MNIST-1D test accuracy")
    left.legend(fontsize=8)
    fig.tight_layout()
    return {"dead_units": fig}
