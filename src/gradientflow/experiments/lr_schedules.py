"""C20: a learning-rate schedule as a remedy for unstable training.

The same MNIST-1D net (4 x 100 ReLU, He, SGD with momentum 0.9) trains at every peak rate of a grid
that runs from well inside the stable region past the edge of stability, under a constant rate (the
control), a cosine decay and a linear warm-up followed by the cosine decay (``schedules.py``, on
torch.optim.lr_scheduler), each with several seeds.

A run is *stable* when it finishes (the NaN guard did not stop it), its loss (a trailing mean over
a quarter of an epoch) never rises above ``SPIKE`` times its running minimum, and its final training
loss is below ``LEARNED`` ln(classes)
(it learned something). A (schedule, rate) cell is stable when a majority of its seeds are. A
schedule's *largest stable peak rate* is the largest grid rate below which every cell is stable;
its *best loss* is the lowest median final loss over its stable cells. The verdict: some warm-up or
decay schedule admits a larger stable peak rate than the constant rate *and* reaches a best loss
no worse than the best constant rate's. Quick size: about 40 s on one core.

    gradientflow reproduce --only C20 --quick --out DIR
"""

from __future__ import annotations

import math

import numpy as np

from .. import plots
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict
from .common import train
from .seeds import majority, spread

CLAIMS = (Claim("C20", "Learning-rate scheduling is one of the five families of remedies for unstable gradients (with "
                       "initialisation, input normalisation, activation choice and optimiser choice).", "004"),)


class Size(claim.Size):
    train: TrainConfig  # the net, data and loop; the rate, the schedule and the seed are set per run
    rates: tuple[float, ...]  # peak learning rates, a factor 2 apart, from well inside the stable region past its edge
    seeds: int  # runs per (schedule, rate) cell


_MODEL, _MOMENTUM = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="momentum", momentum=0.9)
_RATES = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _MOMENTUM,
                                       LoopSpec(epochs=5, batch_size=64)), rates=_RATES, seeds=3)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _MOMENTUM,
                                      LoopSpec(epochs=20, batch_size=64)), rates=(0.0125, *_RATES, 1.6), seeds=5)
SCHEDULES = ("constant", "cosine", "warmup+cosine")  # the control first
WARMUP = 0.1  # warm-up + cosine: the first tenth of the steps
SPIKE = 3.0  # the smoothed loss above 3x its running minimum is a blow-up, even when the run recovers
SMOOTH = 0.25  # the smoothing window, in epochs: batch-to-batch noise late in a long run is not a spike
LEARNED = 0.9  # a final loss above 0.9 ln(classes) is (near) chance: the run learned nothing


def _config(size: Size, name: str, lr: float, seed: int) -> TrainConfig:
    base = size.train
    steps = math.ceil(base.n_train / base.batch_size) * base.epochs
    extra = {} if name == "constant" else {"schedule": "cosine"}
    if name == "warmup+cosine":
        extra["warmup_steps"] = max(2, round(WARMUP * steps))
    return base.replace(lr=lr, seed=seed, data_seed=0, **extra)


def smoothed(loss: np.ndarray, window: int) -> np.ndarray:
    """The per-step loss averaged over ``window`` steps (a trailing mean): one noisy mini-batch is not a blow-up."""
    window = max(1, min(window, len(loss)))
    sums = np.cumsum(np.insert(loss, 0, 0.0))
    return (sums[window:] - sums[:-window]) / window


def outcome(r: dict, classes: int) -> dict:
    """One run: its status, final loss, largest spike of the smoothed loss (a trailing mean over ``SMOOTH`` of an
    epoch's steps) over its running minimum, and whether it is stable."""
    per_epoch = max(1, len(r["loss"]) // max(1, len(r["epochs"]))) if r["epochs"] else len(r["loss"])
    loss = smoothed(np.asarray(r["loss"], dtype=float), round(SMOOTH * per_epoch))
    running = np.minimum.accumulate(loss)
    with np.errstate(divide="ignore", invalid="ignore"):  # a diverged run's NaN: not finished, so not stable anyway
        spike = float(np.max(loss[1:] / running[:-1])) if len(loss) > 1 else 1.0
    finished = r["status"] == "finished"
    final = r["train_loss"] if finished else None
    stable = finished and spike <= SPIKE and final < LEARNED * math.log(classes)
    return {"status": r["status"], "final_loss": final, "max_spike": spike if math.isfinite(spike) else None,
            "stable": bool(stable)}


def run(size: Size, seed: int, folder) -> dict:
    cells = {}
    for name in SCHEDULES:
        for lr in size.rates:
            label = f"{name.replace('+', '_')}_lr{lr:g}"
            runs = [train(_config(size, name, lr, seed + k), folder, f"{label}_seed{seed + k}") for k in range(size.seeds)]
            classes = runs[0]["classes"]
            seeds = [outcome(r, classes) for r in runs]
            cells[f"{name}@{lr:g}"] = {"seeds": seeds, "stable": majority([s["stable"] for s in seeds]),
                                       "loss": spread([s["final_loss"] if s["stable"] else None for s in seeds]).to_dict()}
    return {"rates": list(size.rates), "classes": classes, "cells": cells}


def summary(m: dict) -> dict[str, dict]:
    """Per schedule: the largest stable peak rate (None if even the smallest is unstable), the best loss
    (lowest median over stable cells) and the rate that reaches it."""
    out = {}
    for name in SCHEDULES:
        cells = [(lr, m["cells"][f"{name}@{lr:g}"]) for lr in m["rates"]]
        largest = None
        for lr, cell in cells:
            if not cell["stable"]:
                break
            largest = lr
        stable = [(cell["loss"]["median"], lr) for lr, cell in cells if cell["stable"]]
        best_loss, best_lr = min(stable) if stable else (math.inf, None)
        out[name] = {"largest_stable_rate": largest, "best_loss": best_loss, "best_rate": best_lr}
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    s = summary(m)
    control = s["constant"]
    top = control["largest_stable_rate"] or 0.0
    admits = [k for k in SCHEDULES[1:] if (s[k]["largest_stable_rate"] or 0.0) > top]
    good = [k for k in admits if s[k]["best_loss"] <= control["best_loss"]]
    passed = bool(good)
    numbers = {f"{k}.{field}": v for k, row in s.items() for field, v in row.items()}
    rates = ", ".join(f"{k} {s[k]['largest_stable_rate']}" for k in SCHEDULES)
    losses = ", ".join(f"{k} {s[k]['best_loss']:.3g} (at {s[k]['best_rate']})" for k in SCHEDULES)
    verdict = (f"{' and '.join(good)} admit{'s' if len(good) == 1 else ''} a larger stable peak rate than the "
               "constant rate and reach a loss no worse than its best" if passed else
               "no warm-up or decay schedule both admits a larger stable peak rate and reaches the best constant "
               "rate's loss")
    return {"C20": Verdict(
        passed, f"grid of peak rates x {len(m['cells'][next(iter(m['cells']))]['seeds'])} seeds; a run is stable when it "
                f"finishes, its loss (a trailing mean over {SMOOTH:g} epoch) never exceeds {SPIKE:g}x its running minimum and "
                f"the final loss is below "
                f"{LEARNED:g} ln(classes); a cell is stable when a majority of its seeds are. Pass when a warm-up or "
                "decay schedule's largest stable peak rate exceeds the constant rate's (the control) and its best "
                "median final loss is no worse than the best constant rate's.",
        numbers, "lr_schedules",
        f"largest stable peak rate: {rates}; best median final loss: {losses}: {verdict}.")}


def figures(m: dict) -> dict:
    fig, ax = plots.subplots(figsize=(7, 4))
    chance = LEARNED * math.log(m["classes"])
    for k, name in enumerate(SCHEDULES):
        xs, medians = [], []
        for lr in m["rates"]:
            cell = m["cells"][f"{name}@{lr:g}"]
            for seed in cell["seeds"]:
                y = seed["final_loss"] if seed["stable"] else chance * 1.15
                ax.plot(lr * (1 + 0.04 * (k - 1)), y, "o" if seed["stable"] else "x", color=f"C{k}", ms=4, alpha=0.7)
            if cell["stable"]:
                xs.append(lr)
                medians.append(cell["loss"]["median"])
        ax.plot(xs, medians, "-", color=f"C{k}", label=f"{name} (median of stable cells)")
    ax.axhline(chance * 1.15, color="0.6", lw=0.8, ls=":")
    ax.text(m["rates"][0], chance * 1.17, "x: unstable run (diverged, spiked or learned nothing)", fontsize=7)
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="final training loss",
           title="C20: schedules against the best constant rate (dots: seeds)")
    ax.set_xticks(m["rates"], [f"{lr:g}" for lr in m["rates"]])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    return {"lr_schedules": fig}
