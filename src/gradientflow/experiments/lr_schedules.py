"""C20: a learning-rate schedule as a remedy for unstable training.

The same MNIST-1D net (4 x 100 ReLU, He, SGD with momentum 0.9) trains at every peak rate of a grid a
factor sqrt(2) apart, from well inside the stable region past its edge, at two budgets (a short and a
longer run), each (schedule, rate, budget) cell over several seeds, all in the batched trainer. The
schedules (``schedules.py``, on torch.optim.lr_scheduler):

- ``constant``: the control;
- ``warmup``: a linear warm-up over the first ``WARMUP`` steps, then the same constant peak rate (a fixed
  number of steps at every budget and size: the early phase it guards is counted in steps, not in a
  share of the run);
- ``cosine``: cosine decay from the peak rate to 0 (no warm-up);

so warm-up and decay are judged apart, each against the constant rate at the same peak.

A run is *unstable* when it diverges (non-finite loss), when its gradient norm blows up (above ``BLOWUP``
times its median over the first ``START`` steps, where every schedule starts from the same weights), or
when its loss spikes early (in the first half of the run, the trailing mean of the loss over ``SMOOTH``
of an epoch rises above ``SPIKE`` times its value at the start). Where the run ends (its final loss) does
not decide it: a decaying rate ends low whatever happened on the way. A cell is stable when a majority
of its seeds are; a schedule's *largest stable peak rate* is the largest grid rate at and below which
every cell is stable. Verdict: warm-up admits a larger stable peak rate than the constant rate at the shortest budget,
and at no budget one more than a grid step smaller (over a long run, blow-ups late at a constant peak
decide, and warm-up is not meant to change those).
Decay is measured the same way and reported beside it.

    gradientflow reproduce --only C20 --quick --out DIR
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import plots
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..store import Run
from ..sweep import batched
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict
from .seeds import majority, spread

CLAIMS = (Claim("C20", "Learning-rate scheduling is one of the five families of remedies for unstable gradients (with "
                       "initialisation, input normalisation, activation choice and optimiser choice).", "004"),)


class Size(claim.Size):
    train: TrainConfig  # the net, data and loop; the rate, the schedule, the epochs and the seed are set per run
    rates: tuple[float, ...]  # peak learning rates, a factor sqrt(2) apart
    budgets: tuple[int, ...]  # epochs: a short run and a longer one
    seeds: int  # runs per (schedule, rate, budget) cell


_MODEL, _MOMENTUM = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="momentum", momentum=0.9)
_RATES = tuple(0.025 * 2 ** (k / 2) for k in range(3, 11))  # 0.071 ... 0.8
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _MOMENTUM,
                                       LoopSpec(epochs=2, batch_size=64, grad_norm_every=1)),
             rates=_RATES, budgets=(5, 10), seeds=5)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _MOMENTUM,
                                      LoopSpec(epochs=5, batch_size=64, grad_norm_every=1)),
            rates=_RATES, budgets=(5, 20), seeds=7)
SCHEDULES = ("constant", "warmup", "cosine")  # the control first
WARMUP = 32  # the warm-up's steps (an epoch of the quick size)
BLOWUP = 10.0  # a gradient norm above 10x its median over the first steps is a blow-up
START = 5  # steps over which the starting gradient norm is read (the same weights for every schedule)
SPIKE = 1.5  # early in the run, a smoothed loss 1.5x its starting value: the loss went up, not down
SMOOTH = 0.25  # the smoothing window, in epochs
GRID_STEP = math.sqrt(2)  # one step of the rate grid: a majority of 5-7 seeds moves the edge by one step


def _config(size: Size, name: str, lr: float, epochs: int, seed: int) -> TrainConfig:
    base = size.train.replace(epochs=epochs)
    steps = math.ceil(base.n_train / base.batch_size) * epochs  # the warm-up never takes more than half the run
    extra = {"constant": {}, "cosine": {"schedule": "cosine"},
             "warmup": {"schedule": "warmup", "warmup_steps": min(WARMUP, steps // 2)}}[name]
    return base.replace(lr=lr, seed=seed, data_seed=0, **extra)


def smoothed(loss: np.ndarray, window: int) -> np.ndarray:
    """The per-step loss averaged over ``window`` steps (a trailing mean): one noisy mini-batch is not a blow-up."""
    window = max(1, min(window, len(loss)))
    sums = np.cumsum(np.insert(loss, 0, 0.0))
    return (sums[window:] - sums[:-window]) / window


def outcome(status: str, loss: list[float], norms: list[float], per_epoch: int, final: float) -> dict:
    """One run: diverged, the gradient norm's largest value over its start, the early loss's largest value
    over its start, the final loss, and whether it is stable."""
    diverged = status != "finished"
    g = np.asarray(norms, dtype=float)
    g = g[np.isfinite(g)]
    blowup = float(g.max() / np.median(g[:START])) if len(g) > START else math.nan
    smooth = smoothed(np.asarray(loss, dtype=float), round(SMOOTH * per_epoch))
    early = smooth[: max(1, len(smooth) // 2)]
    early = early[np.isfinite(early)]
    spike = float(early.max() / early[0]) if len(early) else math.nan
    stable = not diverged and blowup <= BLOWUP and spike <= SPIKE
    return {"status": status, "final_loss": None if diverged else final, "blowup": blowup, "spike": spike,
            "stable": bool(stable)}


def _window(summary, stored: Run, steps: int, per_epoch: int) -> dict:
    """A run's ``outcome`` over its first ``steps`` steps (a shorter budget read from a longer run)."""
    loss, norms = stored.series("loss", "train")[1][:steps], stored.series("grad_norm", "train")[1][:steps]
    ended = summary.status != "finished" and summary.steps < steps  # it stopped inside the window
    epochs = steps // per_epoch
    final = summary.history[epochs - 1]["train_loss"] if len(summary.history) >= epochs else math.nan
    return outcome("diverged" if ended else "finished", loss, norms, per_epoch, final)


def run(size: Size, seed: int, folder) -> dict:
    """Constant and warm-up rates do not depend on the run's length, so one run at the longest budget gives
    every budget (its first steps); cosine decay, which does, trains once per budget."""
    folder = Path(folder)
    longest = max(size.budgets)
    plans = [(name, longest) for name in SCHEDULES if name != "cosine"] + [("cosine", e) for e in size.budgets]
    cfgs = [_config(size, name, lr, epochs, seed + k) for name, epochs in plans for lr in size.rates
            for k in range(size.seeds)]
    per_epoch = math.ceil(cfgs[0].n_train / cfgs[0].batch_size)
    trained = {}
    for epochs in sorted({e for _, e in plans}):  # one batch per length
        batch = [c for c in cfgs if c.epochs == epochs]
        runs = [Run.create(folder / f"e{epochs}_{c.schedule}_w{c.warmup_steps}_lr{c.lr:.4g}_seed{c.seed}",
                           c.model_dump()) for c in batch]
        for c, summary, r in zip(batch, batched.train(batch, runs=runs), runs):
            trained[(c.schedule, c.epochs, c.lr, c.seed)] = (summary, Run(r.path))
    cells = {}
    for epochs in size.budgets:
        for name in SCHEDULES:
            schedule, length = {"constant": ("constant", longest), "warmup": ("warmup", longest),
                                "cosine": ("cosine", epochs)}[name]
            for lr in size.rates:
                seeds = [_window(*trained[(schedule, length, lr, seed + k)], epochs * per_epoch, per_epoch)
                         for k in range(size.seeds)]
                cells[f"{epochs}:{name}@{lr:.4g}"] = {
                    "seeds": seeds, "stable": majority([s["stable"] for s in seeds]),
                    "loss": spread([s["final_loss"] for s in seeds]).to_dict(),
                    "blowup": spread([s["blowup"] for s in seeds]).to_dict(),
                    "spike": spread([s["spike"] for s in seeds]).to_dict()}
    return {"rates": list(size.rates), "budgets": list(size.budgets), "cells": cells}


def _cell(m: dict, epochs: int, name: str, lr: float) -> dict:
    return m["cells"][f"{epochs}:{name}@{lr:.4g}"]


def summary(m: dict) -> dict[str, dict]:
    """Per budget and schedule: the largest stable peak rate (0 if even the smallest is unstable), and the
    lowest median final loss over the stable cells with its rate."""
    out = {}
    for epochs in m["budgets"]:
        for name in SCHEDULES:
            largest = 0.0
            for lr in m["rates"]:
                if not _cell(m, epochs, name, lr)["stable"]:
                    break
                largest = lr
            losses = [(_cell(m, epochs, name, lr)["loss"]["median"], lr) for lr in m["rates"]
                      if _cell(m, epochs, name, lr)["stable"]]
            best, at = min(losses) if losses else (math.nan, None)
            out[f"{epochs}:{name}"] = {"largest_stable_rate": largest, "best_loss": best, "best_rate": at}
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    s = summary(m)
    rows = {e: {n: s[f"{e}:{n}"]["largest_stable_rate"] for n in SCHEDULES} for e in m["budgets"]}
    helps = [e for e, r in rows.items() if r["warmup"] > r["constant"]]
    hurts = [e for e, r in rows.items() if r["warmup"] * GRID_STEP < r["constant"] * (1 - 1e-9)]
    shortest = min(m["budgets"])
    warm = shortest in helps and not hurts
    decay = [e for e, r in rows.items() if r["cosine"] > r["constant"]]
    numbers = {f"{key}.{field}": v for key, row in s.items() for field, v in row.items()}
    per_budget = "; ".join(f"{e} epochs: " + ", ".join(f"{n} {r[n]:.3g}" for n in SCHEDULES) for e, r in rows.items())
    n = len(next(iter(m["cells"].values()))["seeds"])
    return {"C20": Verdict(
        warm, f"peak rates {m['rates'][0]:.3g} to {m['rates'][-1]:.3g} a factor sqrt(2) apart, budgets of "
              f"{' and '.join(str(e) for e in m['budgets'])} epochs, {n} seeds per cell. A run is unstable when it "
              f"diverges, its gradient norm exceeds {BLOWUP:g}x its median over the first {START} steps, or in the first "
              f"half of the run its loss (trailing mean over {SMOOTH:g} epoch) exceeds {SPIKE:g}x its starting value; "
              "the final loss decides nothing. A cell is stable when a majority of its seeds are. Pass when warm-up "
              f"(a linear rise over the first {WARMUP} steps, then the same constant peak) has a larger largest stable peak rate "
              "than the constant rate (the control) at the shortest budget, and at no budget one more than a grid "
              "step smaller (over a long run, blow-ups late at a constant peak decide, which warm-up is not meant to "
              "change). Cosine decay is measured the same way and reported, not judged.",
        numbers, "lr_schedules",
        f"largest stable peak rate by budget: {per_budget}: warm-up admits a larger one at "
        f"{_epochs(helps)}, one more than a grid step smaller at {_epochs(hurts)}; cosine decay a larger one at "
        f"{_epochs(decay)}.")}


def _epochs(budgets: list[int]) -> str:
    return ", ".join(f"{e} epochs" for e in budgets) if budgets else "no budget"


def figures(m: dict) -> dict:
    budgets = m["budgets"]
    fig, axes = plots.subplots(1, len(budgets), figsize=(6.5 * len(budgets), 4))
    for ax, epochs in zip(np.atleast_1d(axes), budgets):
        for k, name in enumerate(SCHEDULES):
            shares, medians = [], []
            for lr in m["rates"]:
                cell = _cell(m, epochs, name, lr)
                shares.append(sum(s["stable"] for s in cell["seeds"]) / len(cell["seeds"]))
                medians.append(cell["blowup"]["median"])
            ax.plot(m["rates"], shares, "o-", color=f"C{k}", label=f"{name}: share of seeds stable")
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set(xscale="log", xlabel="peak learning rate (SGD, momentum 0.9)", ylabel="share of seeds stable",
               ylim=(-0.05, 1.05), title=f"C20, {epochs} epochs: stable = no divergence, blow-up or early spike")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {"lr_schedules": fig}
