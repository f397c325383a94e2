"""C21: the recommendation matrix, depth x activation x initialiser, judged per (depth, budget) on two declared metrics.

For each depth and activation (a *row*) and each initialiser (a *column*), an MNIST-1D net (SGD with
momentum 0.9) trains at every rate of a grid a factor sqrt(2) apart, with several seeds (new weights and
sample order); the nets of one row train together in the batched trainer (``sweep.batched``). The rate
is constant, so one run of the longest budget gives every shorter budget from its first epochs.

Two metrics, declared in advance, each read at the last epoch of each budget:

- *trainability*: the training loss (the epoch's mean mini-batch loss), lower is better;
- *generalisation*: the accuracy on a validation split (the data set's test split, held out from
  training and used for nothing else), higher is better.

Each cell (row, column) is tuned for each budget and metric apart: its rate is the grid rate with the
best median over the seeds (a diverged run counts as the worst), and its score is that median.

Columns: the seeds' four candidates (normal 0.01, Xavier, He, normal 1); two that the catalog computes
for each activation, so that the report can say what to use where the recommendation loses:

- ``gain``: the variance-preserving gain, g^2 E[f(z)^2] = 1 for z ~ N(0, 1) (``properties.gain``),
  drawn as W ~ N(0, g^2 / fan_in);
- ``critical``: the edge of chaos, sigma_w^2 with chi_1 = 1 at sigma_b^2 = 0 (Poole et al. 2016;
  Schoenholz et al. 2017; ``init.critical``), drawn as W ~ N(0, sigma_w^2 / fan_in);

and ``again``: the recommended column drawn again with other seeds and tuned the same way. Two draws of
one column differ only by chance, so the recommendation's distance to ``again`` is the *null spread*.
Columns with the same fields (ReLU's gain and critical point are both sqrt 2) are one set of runs.

Rule, at each (depth, budget, metric): a row's null spread is the largest difference that chance alone
gives between two draws of its recommended column: the distance from the recommendation's median to
``again``'s, and from one half to the other of their seeds pooled and split every way (relative for the
loss, in accuracy points for the accuracy). The tie threshold is the largest null spread over the four
rows: a few seeds of one row can understate the noise (nets leaving a plateau at the same step differ
most), and every row of a depth and budget is trained alike. A row *loses* when the best
of the six columns beats both draws of the recommendation (the column and ``again``) by more than that
(the best of six columns, some of them alike, beats a single draw by chance more often); a row whose
best median training loss is above ``LEARNED`` ln(classes) learned nothing within the budget and is
*undecided*. The claim passes when the recommendation loses no row at any depth, budget and metric;
the verdict states the table per (depth, budget).

    gradientflow reproduce --only C21 --quick --out DIR
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

from .. import job, plots, properties
from ..activations import get as activation
from ..config import DataSpec, ModelSpec, TrainConfig
from ..init import critical
from ..optim import OptimizerSpec
from ..sweep import batched
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict

CLAIMS = (Claim("C21", "Recommendation: sigmoid or tanh: Xavier. ReLU or Leaky ReLU: He.", "001, 004"),)


class Size(claim.Size):
    train: TrainConfig  # the data, width, optimiser and batch; depth, activation, init, rate and seed are set per run
    depths: tuple[int, ...]
    budgets: tuple[int, ...]  # epochs, the same at every size: the verdict is stated per (depth, budget)
    rates: tuple[float, ...]  # the grid each cell is tuned over, a factor sqrt(2) apart
    seeds: int  # runs per (cell, rate)


_DATA = DataSpec(n_train=1600, n_test=400)  # 50 steps an epoch; the test split is the validation split
_MODEL, _MOMENTUM = ModelSpec(width=32), OptimizerSpec(optimizer="momentum", momentum=0.9)
_LOOP = LoopSpec(epochs=6, batch_size=32)
_RATES = tuple(0.005 * 2 ** (k / 2) for k in range(11))  # 0.005 ... 0.16
# the sizes differ only in seeds: the same table (depths, budgets, grid) at both
QUICK = Size(train=TrainConfig.compose(_DATA, _MODEL, _MOMENTUM, _LOOP), depths=(6, 20), budgets=(2, 6),
             rates=_RATES, seeds=3)
FULL = Size(train=TrainConfig.compose(_DATA, _MODEL, _MOMENTUM, _LOOP), depths=(6, 20), budgets=(2, 6),
            rates=_RATES, seeds=5)
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
SEEDS_COLUMNS = {"normal 0.01": {"init": "normal", "std": 0.01}, "xavier": {"init": "xavier"},
                 "he": {"init": "he"}, "normal 1": {"init": "normal", "std": 1.0}}
COLUMNS = (*SEEDS_COLUMNS, "gain", "critical")  # the candidates; "again" is the null, never a candidate
AGAIN = "again"
AGAIN_SEEDS = 1000  # the duplicate's seeds start this far from the others'
RECOMMENDED = {"sigmoid": "xavier", "tanh": "xavier", "relu": "he", "leaky_relu": "he"}
METRICS = ("train_loss", "validation_accuracy")  # trainability, generalisation
LEARNED = 0.9  # a row whose best median training loss is above 0.9 ln(classes) learned nothing: it decides nothing


def columns(act: str) -> dict[str, dict]:
    """Each column's init fields for ``act``: the seeds' four and the catalog's computed gain and critical point."""
    computed = {"gain": properties.gain(activation(act)), "critical": math.sqrt(critical(act).sigma_w2)}
    return {**SEEDS_COLUMNS, **{k: {"init": "lecun", "gain": float(f"{g:.4g}")} for k, g in computed.items()}}


def _curves(summary, epochs: int) -> tuple[list, list]:
    """One net's training loss and validation accuracy at the end of each epoch; None after it diverged."""
    rows = summary.history
    loss = [rows[e]["train_loss"] if e < len(rows) and math.isfinite(rows[e]["train_loss"]) else None
            for e in range(epochs)]
    accuracy = [rows[e]["test_accuracy"] if loss[e] is not None else None for e in range(epochs)]
    return loss, accuracy


def _row(base: TrainConfig, rates: tuple[float, ...], seeds: int, seed: int, act: str) -> dict:
    """Every column of one row (depth, activation) at every rate and seed, in one batch: per column, the
    training loss and validation accuracy [rate][seed][epoch]."""
    plan = {**columns(act), AGAIN: columns(act)[RECOMMENDED[act]]}
    # equal fields are one set of runs (the duplicate never: it is drawn again on purpose)
    key = lambda label: json.dumps(plan[label], sort_keys=True) + (AGAIN if label == AGAIN else "")  # noqa: E731
    first = {}
    for label in plan:
        first.setdefault(key(label), label)
    trained = list(first.values())
    cfgs = [base.replace(lr=lr, seed=seed + (AGAIN_SEEDS if label == AGAIN else 0) + 1 + s, **plan[label])
            for label in trained for lr in rates for s in range(seeds)]
    curves = iter([_curves(summary, base.epochs) for summary in batched.train(cfgs)])
    out = {}
    for label in trained:
        runs = [[next(curves) for _ in range(seeds)] for _ in rates]
        out[label] = {"train_loss": [[r[0] for r in seeds_] for seeds_ in runs],
                      "validation_accuracy": [[r[1] for r in seeds_] for seeds_ in runs]}
    for label, fields in plan.items():
        out[label] = {**out[first[key(label)]], "fields": fields}
    return out


def run(size: Size, seed: int, folder) -> dict:
    base = size.train.replace(data_seed=seed, epochs=max(size.budgets))
    cells = {f"{depth}|{act}|{label}": cell for depth in size.depths for act in ACTIVATIONS
             for label, cell in _row(base.replace(depth=depth, activation=act), size.rates, size.seeds, seed,
                                     act).items()}
    t = size.train
    return {"cells": cells, "depths": list(size.depths), "budgets": list(size.budgets), "rates": list(size.rates),
            "seeds": size.seeds, "classes": job.dataset(base).classes,
            "steps_per_epoch": math.ceil(t.n_train / t.batch_size),
            "width": t.width}


def _worst(metric: str) -> float:
    return math.inf if metric == "train_loss" else -math.inf


def tuned(cell: dict, budget: int, metric: str) -> dict:
    """A cell tuned for ``metric`` at ``budget`` epochs: the rate index with the best median over the seeds
    (a diverged run counts as the worst; ties: the smaller rate), that median (the score) and its seeds."""
    sign = 1 if metric == "train_loss" else -1  # lower loss, higher accuracy
    medians = []
    for per_seed in cell[metric]:
        values = [_worst(metric) if run[budget - 1] is None else run[budget - 1] for run in per_seed]
        medians.append(float(np.median(values)))
    best = min(range(len(medians)), key=lambda i: (sign * medians[i], i))
    return {"rate": best, "score": medians[best], "medians": medians,
            "seeds": [run[budget - 1] for run in cell[metric][best]]}


def gap(metric: str, rec: float, other: float) -> float:
    """How much better ``other`` scores than ``rec``: relative for the loss, (rec - other) / other; in
    accuracy points for the accuracy, other - rec (negative: ``rec`` is the better)."""
    if rec == other:
        return 0.0
    if metric == "validation_accuracy":  # a diverged run's accuracy is -inf (the worst)
        if math.isinf(rec) or math.isinf(other):
            return math.inf if math.isinf(rec) else -math.inf
        return other - rec
    if math.isinf(rec) or math.isinf(other):
        return math.inf if math.isinf(rec) else -math.inf
    return (rec - other) / other


def null_spread(metric: str, rec: dict, again: dict) -> float:
    """The largest distance that two draws of one column show: between the medians of ``rec`` and
    ``again`` (each ``tuned``), and between the medians of the two halves of their seeds pooled, over
    every split (a diverged seed counts as the worst)."""
    pooled = [_worst(metric) if v is None else v for v in rec["seeds"] + again["seeds"]]
    k = len(rec["seeds"])
    spreads = [abs(gap(metric, rec["score"], again["score"]))]
    for half in itertools.combinations(range(len(pooled)), k):
        one = float(np.median([pooled[i] for i in half]))
        other = float(np.median([pooled[i] for i in range(len(pooled)) if i not in half]))
        spreads.append(abs(gap(metric, one, other)))
    return max(spreads)


def table(m: dict) -> dict[str, dict]:
    """Per (depth, budget, metric) and row: the best column and its score, the recommendation's, the row's
    null spread, the tie threshold (the largest null spread of the four rows), and the outcome: holds,
    loses or undecided."""
    out = {}
    for depth in m["depths"]:
        for budget in m["budgets"]:
            learned = {act: min(tuned(m["cells"][f"{depth}|{act}|{c}"], budget, "train_loss")["score"]
                                for c in COLUMNS) <= LEARNED * math.log(m["classes"]) for act in ACTIVATIONS}
            for metric in METRICS:
                rows = {}
                for act in ACTIVATIONS:
                    found = {c: tuned(m["cells"][f"{depth}|{act}|{c}"], budget, metric) for c in (*COLUMNS, AGAIN)}
                    sign = 1 if metric == "train_loss" else -1
                    best = min(COLUMNS, key=lambda c: (sign * found[c]["score"], COLUMNS.index(c)))
                    rec = RECOMMENDED[act]
                    null = null_spread(metric, found[rec], found[AGAIN])
                    # the recommendation is drawn twice: a loss must show against both draws
                    g = min(gap(metric, found[rec]["score"], found[best]["score"]),
                            gap(metric, found[AGAIN]["score"], found[best]["score"]))
                    rows[act] = {"best": best, "recommended": rec, "score_best": found[best]["score"],
                                 "score_recommended": found[rec]["score"], "score_again": found[AGAIN]["score"],
                                 "rate_best": m["rates"][found[best]["rate"]],
                                 "rate_recommended": m["rates"][found[rec]["rate"]], "gap": g,
                                 "null": null, "learned": learned[act]}
                threshold = max(r["null"] for r in rows.values())
                for r in rows.values():
                    r["threshold"] = threshold
                    r["outcome"] = ("undecided" if not r["learned"] else
                                    "loses" if r["best"] != r["recommended"] and r["gap"] > threshold else "holds")
                out[f"{depth}|{budget}|{metric}"] = rows
    return out


def _score(metric: str, x: float) -> str:
    if not math.isfinite(x):
        return "diverged"
    return f"{x:.3g}" if metric == "train_loss" else f"{x:.1%}"


def _gap_text(metric: str, x: float) -> str:
    return f"{x:.1%}" if metric == "train_loss" else f"{100 * x:.1f} points"


NAMES = {"train_loss": "training loss", "validation_accuracy": "validation accuracy"}


def verdicts(m: dict) -> dict[str, Verdict]:
    numbers, clauses, lost = {}, [], []
    where = {}  # per (depth, budget): the rows the recommendation loses in either metric
    for key, rows in table(m).items():
        depth, budget, metric = key.split("|")
        steps = int(budget) * m["steps_per_epoch"]
        by = {o: [a for a, r in rows.items() if r["outcome"] == o] for o in ("holds", "loses", "undecided")}
        where.setdefault(f"depth {depth}, {steps} steps", set()).update(by["loses"])
        for act, r in rows.items():
            numbers[f"depth{depth}_{budget}ep_{metric}_{act}"] = {
                k: r[k] for k in ("best", "score_best", "score_recommended", "gap", "null", "threshold", "outcome")}
        parts = []
        if by["holds"]:
            parts.append("holds for " + ", ".join(f"{a} (best {rows[a]['best']}, {_gap_text(metric, rows[a]['gap'])})"
                                                  for a in by["holds"]))
        for act in by["loses"]:
            r = rows[act]
            lost.append(f"{act} at depth {depth}, {steps} steps ({NAMES[metric]})")
            parts.append(f"loses {act} to {r['best']} ({_score(metric, r['score_best'])} against "
                         f"{_score(metric, r['score_recommended'])}, better than both its draws by "
                         f"{_gap_text(metric, r['gap'])})")
        if by["undecided"]:
            parts.append(f"undecided for {', '.join(by['undecided'])} (nothing learned)")
        tie = _gap_text(metric, next(iter(rows.values()))["threshold"])
        clauses.append(f"depth {depth}, {steps} steps, {NAMES[metric]} (tie within {tie}): " + "; ".join(parts))
    summary = "; ".join(f"{label}: loses {', '.join(sorted(acts))}" if acts else f"{label}: holds"
                        for label, acts in where.items())
    numbers["by_depth_and_budget"] = {label: "loses" if acts else "holds" for label, acts in where.items()}
    rates = m["rates"]
    return {"C21": Verdict(
        not lost, f"each cell (depth, activation, initialiser) tuned over rates {rates[0]:.3g} to {rates[-1]:.3g} "
                  f"a factor sqrt(2) apart, median of {m['seeds']} seeds, for each budget and metric apart (training "
                  "loss: trainability; validation accuracy: generalisation). A row's null spread is the largest "
                  "distance between the recommended column and the same column drawn again with other seeds (their "
                  "medians, and the two halves of their seeds pooled, split every way); the tie threshold at a "
                  "depth, budget and metric is the largest null spread of its four rows. Pass when at no depth, "
                  "budget and metric the best of the six columns beats both draws of the recommendation by more "
                  "than the tie threshold; a row "
                  f"whose best median training loss is above {LEARNED} ln(classes) learned nothing and decides "
                  "nothing.",
        {**numbers, "rows_lost": lost}, "recommendation", f"by depth and budget, {summary}. In detail: "
        + "; ".join(clauses) + ".")}


def figures(m: dict) -> dict:
    t = table(m)
    keys = [(d, b) for d in m["depths"] for b in m["budgets"]]
    fig, axes = plots.subplots(len(METRICS), len(keys), figsize=(4.6 * len(keys), 7.6), squeeze=False)
    labels = (*COLUMNS, AGAIN)
    for i, metric in enumerate(METRICS):
        for ax, (depth, budget) in zip(axes[i], keys):
            rows = t[f"{depth}|{budget}|{metric}"]
            found = [[tuned(m["cells"][f"{depth}|{a}|{c}"], budget, metric) for c in labels] for a in ACTIVATIONS]
            score = np.array([[f["score"] for f in row] for row in found], dtype=float)
            shown = np.where(np.isfinite(score), score, np.nan)
            finite = score[np.isfinite(score)]
            # from just under the best to chance: the scale spends its colours on the range seen
            if metric == "train_loss":
                low, high, cmap = (0.95 * finite.min() if finite.size else 0.0), math.log(m["classes"]), "viridis_r"
            else:
                low, high, cmap = 1 / m["classes"], (min(1.0, 1.05 * finite.max()) if finite.size else 1.0), "viridis"
            high = max(high, low + 1e-6)
            image = ax.imshow(shown, cmap=cmap, aspect="auto", vmin=low, vmax=high)
            for r, act in enumerate(ACTIVATIONS):
                for c, label in enumerate(labels):
                    mark = ("*" if label == RECOMMENDED[act] else "") + ("<" if label == rows[act]["best"] else "")
                    k = found[r][c]["rate"]
                    edge = "≥" if k == len(m["rates"]) - 1 else "≤" if k == 0 else ""  # the optimum may lie beyond
                    text = f"{_score(metric, score[r, c])}{mark}\nlr {edge}{m['rates'][k]:.2g}"
                    position = (score[r, c] - low) / (high - low) if np.isfinite(score[r, c]) else 0.0
                    dark = np.isfinite(score[r, c]) and (position > 0.5 if metric == "train_loss" else position < 0.5)
                    ax.text(c, r, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30)
            ax.set_yticks(range(len(ACTIVATIONS)),
                          [f"{a}\n{rows[a]['outcome']}" for a in ACTIVATIONS], fontsize=7)
            ax.set_title(f"depth {depth}, {budget * m['steps_per_epoch']} steps: {NAMES[metric]}", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle("C21: median over seeds at each cell's tuned rate; * = the seeds' recommendation, < = the row's best, "
                 "'again' = the recommendation drawn again (the null)", fontsize=10)
    fig.tight_layout()
    return {"recommendation": fig, "recommendation_curves": _curve_figure(m, t)}


def _curve_figure(m: dict, rows: dict):
    """Median training loss against steps for the recommendation, its duplicate and the row's best column at
    the longest budget, each at the rate tuned for it there: the budget at which a column wins is visible."""
    budget = max(m["budgets"])
    fig, axes = plots.subplots(len(m["depths"]), len(ACTIVATIONS), figsize=(3.6 * len(ACTIVATIONS),
                                                                            3.0 * len(m["depths"])), squeeze=False)
    steps = [(e + 1) * m["steps_per_epoch"] for e in range(budget)]
    for axes_row, depth in zip(axes, m["depths"]):
        for ax, act in zip(axes_row, ACTIVATIONS):
            best = rows[f"{depth}|{budget}|train_loss"][act]["best"]
            for label, style in ((RECOMMENDED[act], "-"), (AGAIN, ":"), (best, "--")):
                cell = m["cells"][f"{depth}|{act}|{label}"]
                k = tuned(cell, budget, "train_loss")["rate"]
                curve = [float(np.median([math.inf if run[e] is None else run[e] for run in cell["train_loss"][k]]))
                         for e in range(budget)]
                ax.plot(steps, [v if math.isfinite(v) else np.nan for v in curve], style, marker="o", ms=3,
                        label=f"{label} (lr {m['rates'][k]:.2g})")
            for b in m["budgets"]:
                ax.axvline(b * m["steps_per_epoch"], color="0.8", lw=0.8)
            ax.set_title(f"{act}, depth {depth}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel("training loss (median)")
            ax.legend(fontsize=6)
    fig.suptitle("C21: training loss against steps at each column's rate tuned for the longest budget "
                 "(grey: the budgets judged)", fontsize=10)
    fig.tight_layout()
    return fig
