"""C21: the recommendation matrix, depth x activation x initialiser -> training loss after a fixed budget.

For each depth, activation and initialiser (a *cell*), an MNIST-1D net (SGD with momentum 0.9) trains
for the same number of steps. Each cell gets its own learning rate: the tuning seed trains it at every
rate of a small grid, and the rate with the lowest loss on a validation split (the last fifth of the
training set, never trained on) is kept. The cell is then trained at that rate with ``seeds`` fresh
seeds (new weights and data order; the tuning run is not reused), and its score is the median final
training loss over them; a diverged run scores infinity and is counted.

Columns: the seeds' four candidates (normal 0.01, Xavier, He, normal 1) and two that the catalog
computes for each activation, so that the report can say what to use where the recommendation loses:

- ``gain``: the variance-preserving gain, g^2 E[f(z)^2] = 1 for z ~ N(0, 1) (``properties.gain``),
  drawn as W ~ N(0, g^2 / fan_in);
- ``critical``: the edge of chaos, sigma_w^2 with chi_1 = 1 at sigma_b^2 = 0 (Poole et al. 2016;
  Schoenholz et al. 2017; ``init.critical``), drawn as W ~ N(0, sigma_w^2 / fan_in).

Both gains are rounded to 4 digits, so a column equal to another (ReLU's gain and critical point are
both He's sqrt 2) is one set of runs. The seeds recommend Xavier for sigmoid and tanh, He for ReLU
and Leaky ReLU. The recommendation *loses* a row (a depth and an activation) when the row's best
column, paired seed by seed, beats it by more than ``TIE`` (relative) on every seed; otherwise it
holds (it is the best, or tied within seed noise). A row where no column learned anything (the best
median loss above ``LEARNED`` ln(classes)) is *undecided*: the budget was too short to tell. The
claim passes when the recommendation loses no row at any depth.

    gradientflow reproduce --only C21 --quick --out DIR
"""

from __future__ import annotations

import math

import numpy as np

from .. import job, plots, properties
from ..activations import get as activation
from ..config import DataSpec, ModelSpec, TrainConfig
from ..data import Dataset
from ..init import critical
from ..optim import OptimizerSpec
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict
from .common import fit_config
from .seeds import median_diverged_last as _median, spread

CLAIMS = (Claim("C21", "Recommendation: sigmoid or tanh: Xavier. ReLU or Leaky ReLU: He.", "001, 004"),)


class Size(claim.Size):
    train: TrainConfig  # the data, width, optimiser and loop; depth, activation, init, rate and seed are set per run
    depths: tuple[int, ...]
    rates: tuple[float, ...]  # the learning-rate grid each cell is tuned over
    seeds: int  # evaluation runs per cell at its tuned rate


_MODEL, _MOMENTUM = ModelSpec(width=64), OptimizerSpec(optimizer="momentum", momentum=0.9)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=10), _MODEL, _MOMENTUM,
                                       LoopSpec(epochs=3, batch_size=32)),
             depths=(6, 20), rates=(0.003, 0.01, 0.03, 0.1), seeds=3)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=10), _MODEL, _MOMENTUM,
                                      LoopSpec(epochs=4, batch_size=32)),
            depths=(6, 20, 50), rates=(0.003, 0.01, 0.03, 0.1), seeds=3)  # about 1,000 CPU-seconds
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
SEEDS_COLUMNS = {"normal 0.01": {"init": "normal", "std": 0.01}, "xavier": {"init": "xavier"},
                 "he": {"init": "he"}, "normal 1": {"init": "normal", "std": 1.0}}
COLUMNS = (*SEEDS_COLUMNS, "gain", "critical")
RECOMMENDED = {"sigmoid": "xavier", "tanh": "xavier", "relu": "he", "leaky_relu": "he"}
VALIDATION = 0.2  # the share of the training set held out to choose each cell's rate
TIE = 0.05  # the best column must beat the recommendation by more than 5% on every seed (paired) to count
LEARNED = 0.9  # a row whose best median loss is above 0.9 ln(classes) learned nothing: it decides nothing


def columns(act: str) -> dict[str, dict]:
    """Each column's init fields for ``act``: the seeds' four and the catalog's computed gain and critical point."""
    computed = {"gain": properties.gain(activation(act)), "critical": math.sqrt(critical(act).sigma_w2)}
    return {**SEEDS_COLUMNS, **{k: {"init": "lecun", "gain": float(f"{g:.4g}")} for k, g in computed.items()}}


def _split(d: Dataset) -> Dataset:
    """The training set cut in two: the first part to train on, the last ``VALIDATION`` share as the test split."""
    k = round(len(d.y_train) * (1 - VALIDATION))
    return Dataset(d.name, d.x_train[:k], d.y_train[:k], d.x_train[k:], d.y_train[k:], d.classes)


def _train(cfg: TrainConfig, d: Dataset) -> dict:
    """One run of ``cfg`` on ``d`` (not stored: hundreds of short runs): final train and validation loss."""
    s = fit_config(cfg, d)
    ok = s.status == "finished" and math.isfinite(s.train_loss)
    return {"train_loss": s.train_loss if ok else math.inf, "validation_loss": s.test_loss if ok else math.inf,
            "validation_accuracy": s.test_accuracy if ok else None}


def _cell(base: TrainConfig, d: Dataset, rates: tuple[float, ...], seed: int, seeds: int) -> dict:
    """Tune the rate with ``seed`` on the validation split, then train ``seeds`` fresh seeds at it."""
    tuning = [_train(base.replace(lr=lr, seed=seed), d)["validation_loss"] for lr in rates]
    best = min(range(len(rates)), key=lambda i: (tuning[i], i))  # ties: the smaller rate
    runs = [_train(base.replace(lr=rates[best], seed=seed + 1 + k), d) for k in range(seeds)]
    return {"rate": rates[best], "validation_by_rate": tuning,
            "losses": [r["train_loss"] for r in runs], "diverged": sum(not math.isfinite(r["train_loss"]) for r in runs),
            "validation_accuracy": [r["validation_accuracy"] for r in runs]}


def run(size: Size, seed: int, folder) -> dict:
    base = size.train.replace(data_seed=seed)
    _, full = job.prepare(base)
    d = _split(full)
    cells, done = {}, {}
    for depth in size.depths:
        for act in ACTIVATIONS:
            for label, fields in columns(act).items():
                cfg = base.replace(depth=depth, activation=act, **fields)
                key = cfg.model_dump_json()
                if key not in done:  # a column equal to another is the same runs
                    done[key] = _cell(cfg, d, size.rates, seed, size.seeds)
                cells[f"{depth}|{act}|{label}"] = {**done[key], "fields": fields}
    t = size.train
    return {"cells": cells, "depths": list(size.depths), "rates": list(size.rates), "classes": d.classes,
            "steps": math.ceil(len(d.y_train) / t.batch_size) * t.epochs, "width": t.width}


def _gap(rec: float, best: float) -> float:
    """The recommendation's loss relative to the best column's on one seed: (rec - best) / best."""
    if rec == best:
        return 0.0
    return math.inf if math.isinf(rec) else -math.inf if math.isinf(best) else (rec - best) / best


def row(m: dict, depth: int, act: str) -> dict:
    """One row's outcome: its best column, the recommendation's paired gaps to it, and whether it loses."""
    scores = {label: _median(m["cells"][f"{depth}|{act}|{label}"]["losses"]) for label in COLUMNS}
    best = min(COLUMNS, key=lambda k: (scores[k], COLUMNS.index(k)))
    rec = RECOMMENDED[act]
    finals = lambda label: [math.inf if v is None else v for v in m["cells"][f"{depth}|{act}|{label}"]["losses"]]  # noqa: E731
    gaps = [_gap(r, b) for r, b in zip(finals(rec), finals(best))]
    learned = scores[best] <= LEARNED * math.log(m["classes"])
    loses = learned and best != rec and min(gaps) > TIE
    return {"best": best, "recommended": rec, "score_best": scores[best], "score_recommended": scores[rec],
            "gaps": gaps, "smallest_gap": min(gaps), "learned": learned, "loses": loses}


def _loss(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "diverged"


def verdicts(m: dict) -> dict[str, Verdict]:
    numbers, clauses, lost = {}, [], []
    for depth in m["depths"]:
        held, undecided, losses = [], [], []
        for act in ACTIVATIONS:
            r = row(m, depth, act)
            numbers[f"depth{depth}_{act}"] = {k: r[k] for k in ("best", "score_best", "score_recommended",
                                                                 "smallest_gap", "learned", "loses")}
            if r["loses"]:
                lost.append(f"{act} at depth {depth}")
                losses.append(f"at depth {depth}, {act}: {r['best']} reaches {_loss(r['score_best'])} against "
                               f"{r['recommended']}'s {_loss(r['score_recommended'])} (better on every seed, by "
                               f"{r['smallest_gap']:.0%} at least): use {r['best']}")
            else:
                (held if r["learned"] else undecided).append(act)
        if held:
            clauses.append(f"at depth {depth} the recommendation holds (best or tied) for {', '.join(held)}")
        if undecided:
            clauses.append(f"at depth {depth} no initialiser trained {', '.join(undecided)} within the budget "
                           f"(undecided)")
        clauses += losses
    k = len(m["cells"][next(iter(m["cells"]))]["losses"])
    why = f"after {m['steps']} steps at each cell's tuned rate, median of {k} seeds: " + "; ".join(clauses) + "."
    return {"C21": Verdict(
        not lost, f"the recommended initialiser loses no row (depth x activation): a row is lost when the best of "
                  f"the six columns beats it by more than {TIE:.0%} on every seed, paired by seed; a row whose best "
                  f"median loss is above {LEARNED} ln(classes) learned nothing and decides nothing. Each cell's "
                  f"learning rate is chosen from {m['rates']} on a validation split.",
        {**numbers, "rows_lost": lost}, "recommendation", why)}


def figures(m: dict) -> dict:
    depths = m["depths"]
    fig, axes = plots.subplots(1, len(depths), figsize=(6.2 * len(depths), 4.2), squeeze=False)
    for ax, depth in zip(axes[0], depths):
        med = np.array([[_median(m["cells"][f"{depth}|{a}|{c}"]["losses"]) for c in COLUMNS] for a in ACTIVATIONS])
        shown = np.where(np.isfinite(med), med, np.nan)
        image = ax.imshow(shown, cmap="viridis_r", aspect="auto", vmin=0, vmax=math.log(m["classes"]))  # chance at the top
        for r, act in enumerate(ACTIVATIONS):
            best = row(m, depth, act)["best"]
            for c, label in enumerate(COLUMNS):
                cell = m["cells"][f"{depth}|{act}|{label}"]
                s = spread(cell["losses"])
                n = len(cell["losses"])
                if all(v is None or math.isinf(v) for v in cell["validation_by_rate"]):
                    ax.text(c, r, "diverged at\nevery rate" + ("*" if label == RECOMMENDED[act] else ""),
                            ha="center", va="center", fontsize=6.5)
                    continue
                text = (f"{s.missing}/{n} diverged" if s.missing == n else f"{s.median:.2f}\n[{s.q10:.2f}, {s.q90:.2f}]"
                        + (f"\n{s.missing}/{n} diverged" if s.missing else ""))
                mark = ("*" if label == RECOMMENDED[act] else "") + ("<" if label == best else "")
                ax.text(c, r, f"{text}{mark}\nlr {cell['rate']:g}", ha="center", va="center", fontsize=6.5,
                        color="white" if np.isfinite(med[r, c]) and med[r, c] > 0.6 * math.log(m["classes"]) else "black")
        ax.set_xticks(range(len(COLUMNS)), COLUMNS, fontsize=8)
        ax.set_yticks(range(len(ACTIVATIONS)), ACTIVATIONS)
        ax.set_title(f"depth {depth}: median training loss [10-90%] after {m['steps']} steps", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle("C21: * = the seeds' recommendation, < = the row's best; each cell at its own tuned rate", fontsize=10)
    fig.tight_layout()
    return {"recommendation": fig}
