"""C21: the recommendation matrix, activation x initialiser -> training loss after a fixed budget.

A deep MNIST-1D net (6 x 100, SGD with momentum 0.9, lr 0.01) trains for the same number of steps
with each activation and each initialiser; the heat map shows the final training loss (mean over
seeds). The seeds recommend Xavier for sigmoid and tanh, He for ReLU and Leaky ReLU.
"""

from __future__ import annotations

import math

import numpy as np

from .. import plots
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict, finite
from .common import train

CLAIMS = (Claim("C21", "Recommendation: sigmoid or tanh: Xavier. ReLU or Leaky ReLU: He.", "001, 004"),)


class Size(claim.Size):
    train: TrainConfig  # the net and loop; activation, init and seed are set per cell
    seeds: int  # runs per cell, averaged


_MODEL, _MOMENTUM = ModelSpec(depth=6, width=100), OptimizerSpec(optimizer="momentum", momentum=0.9, lr=0.01)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _MOMENTUM,
                                       LoopSpec(epochs=5, batch_size=32)), seeds=2)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _MOMENTUM,
                                      LoopSpec(epochs=20, batch_size=32)), seeds=3)
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
INITS = {"normal 0.01": ("normal", 0.01), "xavier": ("xavier", None), "he": ("he", None), "normal 1": ("normal", 1.0)}
RECOMMENDED = {"sigmoid": "xavier", "tanh": "xavier", "relu": "he", "leaky_relu": "he"}
TIE = 0.02  # the recommended init counts as best when its loss is within 2% of the row's best (seed noise)


def run(size: Size, seed: int, folder) -> dict:
    grid = {}
    for act in ACTIVATIONS:
        for label, (init_name, std) in INITS.items():
            losses = []
            for k in range(size.seeds):
                cfg = size.train.replace(activation=act, init=init_name, std=std, seed=seed + k, data_seed=seed)
                r = train(cfg, folder, f"{act}_{label.replace(' ', '')}_seed{seed + k}")
                losses.append(r["train_loss"] if r["status"] == "finished" else math.inf)
            grid[f"{act}|{label}"] = sum(losses) / len(losses)
    t = size.train
    return {"grid": grid, "steps": math.ceil(t.n_train / t.batch_size) * t.epochs}


def _row(m: dict, act: str) -> dict[str, float]:
    return {label: m["grid"][f"{act}|{label}"] for label in INITS}


def verdicts(m: dict) -> dict[str, Verdict]:
    agree, numbers, notes = {}, {}, []
    for act in ACTIVATIONS:
        row = _row(m, act)
        best = min(row, key=lambda k: row[k] if finite(row[k]) else math.inf)
        rec = RECOMMENDED[act]
        agree[act] = finite(row[rec]) and row[rec] <= (1 + TIE) * row[best]
        numbers[f"{act}_best"] = best
        numbers[f"{act}_loss_{rec}"] = row[rec]
        numbers[f"{act}_loss_best"] = row[best]
        if not agree[act]:
            notes.append(f"{act}: {best} reaches {row[best]:.3g} against {rec}'s {row[rec]:.3g}")
    passed = all(agree.values())
    why = (f"after {m['steps']} steps the recommended initialiser is best (within {TIE:.0%}) for "
           f"{', '.join(a for a, ok in agree.items() if ok) or 'no activation'}")
    why += "; it is not for " + "; ".join(notes) + "." if notes else "."
    return {"C21": Verdict(
        passed, f"for each activation, the recommended initialiser's final training loss is within {TIE:.0%} of the "
                "best in its row of the matrix (normal 0.01, Xavier, He, normal 1) after the same number of steps.",
        numbers, "recommendation", why)}


def figures(m: dict) -> dict:
    values = np.array([[m["grid"][f"{a}|{i}"] for i in INITS] for a in ACTIVATIONS], float)
    fig, ax = plots.subplots(figsize=(7, 4))
    shown = np.where(np.isfinite(values), values, np.nan)
    image = ax.imshow(shown, cmap="viridis_r", aspect="auto")
    for r, act in enumerate(ACTIVATIONS):
        for c, label in enumerate(INITS):
            v = values[r, c]
            text = f"{v:.3g}" if np.isfinite(v) else "diverged"
            mark = " *" if label == RECOMMENDED[act] else ""
            ax.text(c, r, text + mark, ha="center", va="center", fontsize=9,
                    color="white" if np.isfinite(v) and v > np.nanmean(shown) else "black")
    ax.set_xticks(range(len(INITS)), list(INITS))
    ax.set_yticks(range(len(ACTIVATIONS)), ACTIVATIONS)
    fig.colorbar(image, ax=ax, label="training loss after the budget")
    ax.set_title(f"C21: loss after {m['steps']} steps (* = the seeds' recommendation)", fontsize=10)
    fig.tight_layout()
    return {"recommendation": fig}
