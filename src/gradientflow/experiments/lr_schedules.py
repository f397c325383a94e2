"""C20: a learning-rate schedule as a remedy for unstable training.

The same MNIST-1D net (4 x 100 ReLU, He, SGD with momentum 0.9) trains at a learning rate that is
too high to hold constant, under the schedules of ``schedules.py`` (torch.optim.lr_scheduler):
constant, step decay, exponential decay, cosine, and warm-up followed by cosine.
"""

from __future__ import annotations

import math


from .. import plots
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict, finite
from .common import train

CLAIMS = (Claim("C20", "Learning-rate scheduling is one of the five families of remedies for unstable gradients (with "
                       "initialisation, input normalisation, activation choice and optimiser choice).", "004"),)


class Size(claim.Size):
    train: TrainConfig  # the constant-rate run; each schedule changes only the schedule fields


# momentum at 0.3: at the edge of stability for this net, where a schedule should matter
_MODEL, _MOMENTUM = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="momentum", momentum=0.9, lr=0.3)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _MOMENTUM,
                                       LoopSpec(epochs=10, batch_size=64)))
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _MOMENTUM,
                                      LoopSpec(epochs=40, batch_size=64)))
SCHEDULES = {"constant": {"schedule": "constant"},
             "step": {"schedule": "step", "gamma": 0.3},
             "exponential": {"schedule": "exponential"},
             "cosine": {"schedule": "cosine"},
             "warmup+cosine": {"schedule": "cosine"}}
UNSTABLE = 1.0  # "unstable": some epoch's training loss rises above the first epoch's


def _config(size: Size, name: str, seed: int) -> TrainConfig:
    base = size.train
    steps = math.ceil(base.n_train / base.batch_size) * base.epochs
    extra = dict(SCHEDULES[name])
    if name == "step":
        extra["step_size"] = max(1, steps // 3)  # three stages
    if name == "exponential":
        extra["gamma"] = 0.01 ** (1 / steps)  # down to 1% of the rate by the end
    if name == "warmup+cosine":
        extra["warmup_steps"] = max(1, steps // 10)
    return base.replace(**extra, seed=seed, data_seed=seed)


def run(size: Size, seed: int, folder) -> dict:
    return {"runs": {name: train(_config(size, name, seed), folder, name.replace("+", "_")) for name in SCHEDULES},
            "lr": size.train.lr}


def _unstable(r: dict) -> bool:
    """Diverged, or an epoch ended with a training loss above the first epoch's (a blow-up)."""
    losses = r["epochs"]
    return r["status"] != "finished" or any(not finite(v) or v > UNSTABLE * losses[0] for v in losses[1:])


def verdicts(m: dict) -> dict[str, Verdict]:
    runs = m["runs"]
    const = runs["constant"]
    scheduled = {k: r for k, r in runs.items() if k != "constant"}
    const_final = const["train_loss"] if finite(const["train_loss"]) else math.inf
    better = all(r["status"] == "finished" and r["train_loss"] < const_final and not _unstable(r)
                 for r in scheduled.values())
    passed = _unstable(const) and better
    return {"C20": Verdict(
        passed, f"at lr {m['lr']:g} the constant-rate run is unstable (it diverges, or an epoch ends with a training loss "
                "above the first epoch's), and every schedule that lowers the rate over time (step, exponential, "
                "cosine, warm-up + cosine) trains stably to a lower final training loss than the constant run.",
        {**{f"final_loss[{k}]": r["train_loss"] for k, r in runs.items()},
         **{f"test_accuracy[{k}]": r["test_accuracy"] for k, r in runs.items()},
         "constant_unstable": _unstable(const)},
        "lr_schedules",
        f"constant: {const['status']}, epoch losses {', '.join(f'{v:.3g}' for v in const['epochs'])}; scheduled final "
        "losses " + ", ".join(f"{k} {r['train_loss']:.3g}" for k, r in scheduled.items()) + ".")}


def figures(m: dict) -> dict:
    fig, (a, b) = plots.subplots(1, 2, figsize=(12, 4))
    for k, (name, r) in enumerate(m["runs"].items()):
        a.semilogy(r["loss_steps"], r["loss"], color=f"C{k}", lw=0.6, alpha=0.8, label=name)
        acc = r["test_accuracy_by_epoch"]
        b.plot(range(1, len(acc) + 1), acc, "o-", ms=3, color=f"C{k}", label=name)
    a.set(xlabel="step", ylabel="training loss (per batch)", title=f"C20: SGD + momentum at lr {m['lr']:g}")
    b.set(xlabel="epoch", ylabel="test accuracy", title="MNIST-1D test accuracy")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.tight_layout()
    return {"lr_schedules": fig}
