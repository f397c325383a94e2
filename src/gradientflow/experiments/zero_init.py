"""C14: all-zero init makes every unit of a layer compute and learn the same thing.

A sigmoid net (sigmoid, because with zero weights its units output 1/2, so gradients reach the
hidden weights; a tanh or ReLU net's would stay exactly 0) trains from all-zero weights and from
Xavier under the probe. The probe's ``distinct_units`` counts the rows of [W | b] that are not
exact copies of another after training.
"""

from __future__ import annotations

import numpy as np

from .. import job, layers, plots
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..store import Run
from ..train import LoopSpec
from ..probes import watch
from . import claim
from .claim import Claim, Verdict
from .common import hidden

CLAIMS = (Claim("C14", "All-zero init makes every neuron of a layer compute and learn the same thing: the layer is "
                       "worth one neuron.", "001, 004"),)


class Size(claim.Size):
    train: TrainConfig  # a sigmoid net under SGD; the init is zeros, then xavier as the control


_MODEL, _SGD = ModelSpec(depth=3, width=64, activation="sigmoid"), OptimizerSpec(optimizer="sgd", lr=0.5)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=5, batch_size=32)))
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=30, batch_size=32)))


def run(size: Size, seed: int, folder) -> dict:
    out = {"width": size.train.width}
    for init_name in ("zeros", "xavier"):
        cfg = size.train.replace(init=init_name, seed=seed, data_seed=seed)
        net, d = job.prepare(cfg)
        with watch(net, exact=True) as probe:  # the claims read whole batches, every step
            summary = job.train(cfg, net, d, run=Run.create(folder / init_name, cfg.model_dump()))
            rows = hidden(probe.summary().to_dict("records"))
        out[init_name] = {"distinct_units": [int(r["distinct_units"]) for r in rows],
                          "weight_norm": [float(layer.weight.detach().norm()) for layer in layers.hidden(net)],
                          "train_loss": summary.train_loss, "test_accuracy": summary.test_accuracy,
                          "epochs": [h["train_loss"] for h in summary.history]}
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    z, x = m["zeros"], m["xavier"]
    moved = all(w > 0 for w in z["weight_norm"])
    passed = all(k == 1 for k in z["distinct_units"]) and moved and all(k == m["width"] for k in x["distinct_units"])
    return {"C14": Verdict(
        passed, "after training from all-zero weights every hidden layer has exactly 1 distinct unit (rows of "
                "[W | b] compared exactly) although its weights moved away from 0 (it learned, all units alike); "
                f"the same net from Xavier keeps all {m['width']} distinct.",
        {"distinct_units_zero_init": z["distinct_units"], "distinct_units_xavier": x["distinct_units"],
         "weight_norm_zero_init": z["weight_norm"], "test_accuracy_zero_init": z["test_accuracy"],
         "test_accuracy_xavier": x["test_accuracy"]},
        "zero_init",
        f"distinct units per hidden layer: zero init {z['distinct_units']}, Xavier {x['distinct_units']}; weight "
        f"norms after training from zero {', '.join(f'{w:.3g}' for w in z['weight_norm'])}; test accuracy "
        f"{z['test_accuracy']:.3g} vs {x['test_accuracy']:.3g}.")}


def figures(m: dict) -> dict:
    fig, (a, b) = plots.subplots(1, 2, figsize=(11, 3.8))
    layers = np.arange(1, len(m["zeros"]["distinct_units"]) + 1)
    a.bar(layers - 0.2, m["zeros"]["distinct_units"], width=0.4, label="all-zero init")
    a.bar(layers + 0.2, m["xavier"]["distinct_units"], width=0.4, label="Xavier")
    a.set(xlabel="hidden layer", ylabel="distinct units after training", yscale="log",
          title=f"C14: a layer of {m['width']} worth one unit")
    a.legend(fontsize=8)
    for k, name in enumerate(("zeros", "xavier")):
        losses = m[name]["epochs"]
        b.plot(range(1, len(losses) + 1), losses, "o-", ms=3, color=f"C{k}", label=name)
    b.set(xlabel="epoch", ylabel="training loss", title="sigmoid net, SGD")
    b.legend(fontsize=8)
    fig.tight_layout()
    return {"zero_init": fig}
