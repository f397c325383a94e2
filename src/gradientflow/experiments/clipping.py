"""C3: exploding gradients, and clipping the gradient's norm keeps the same run alive.

A deep ReLU net drawn with a large init (N(0, std^2) with fan_in std^2 well above He's 2) has a
layer factor sqrt(chi_1) = sqrt(sigma_w^2 / 2) > 1: the gradient grows towards the input. The
probe measures that at init beside the theory. The same config (same seed, same batches) then
trains twice through the engine: without clipping, and with the gradient norm clipped.
"""

from __future__ import annotations

import math

import numpy as np

from .. import init, job, plots, theory
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..train import LoopSpec
from ..store import Run
from . import claim
from .claim import Claim, Verdict, finite
from .common import hidden, probe_once, train

CLAIMS = (Claim("C3", "Products of factors above 1 blow up; a step off a 'cliff' throws the parameters far away and "
                      "training diverges. Clipping the gradient (its norm or its values) bounds the step and "
                      "prevents it.", "001, 004"),)
class Size(claim.Size):
    train: TrainConfig  # the unclipped run
    clip_norm: float  # the clipped run's threshold on the total gradient norm


# 8 x 64 ReLU with N(0, 0.3^2) weights: sigma_w^2 = 64 x 0.09 = 5.8 > 2, so the gradient grows towards the input
_MODEL = ModelSpec(depth=8, width=64, activation="relu", init="normal", std=0.3)
_SGD = OptimizerSpec(optimizer="sgd", lr=0.05)
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=10, batch_size=50)),
             clip_norm=5.0)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=40, batch_size=50)),
            clip_norm=5.0)


def run(size: Size, seed: int, folder) -> dict:
    plain = size.train.replace(seed=seed, data_seed=seed)
    clipped = plain.replace(clip_norm=size.clip_norm)
    net, d = job.prepare(plain)
    rows = hidden(probe_once(net, d.x_train[:500], d.y_train[:500]))
    sw2, _ = init.meanfield_scales(plain.init, plain.width, scale=plain.scale())
    classes = d.classes
    out = {"sigma_w2": sw2, "clip_norm": size.clip_norm, "classes": classes, "depth": plain.depth,
           "act_grad_norm_at_init": [r["act_grad_norm"] for r in rows],
           "theory_factor": [p.grad_norm_factor for p in theory.predict_layers("relu", plain.depth, sw2)],
           "chi1": float(theory.chi1("relu", 1.0, sw2)),
           "unclipped": train(plain, folder, "unclipped"), "clipped": train(clipped, folder, "clipped")}
    for label in ("unclipped", "clipped"):
        out[label]["grad_norm"] = Run(folder / label).series("grad_norm", "train")[1]
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    """Pass when the gradient grows towards the input at init (factor > 1), the unclipped run diverges, and the
    clipped run finishes below chance-level loss ln(classes)."""
    g = m["act_grad_norm_at_init"]
    growth = g[0] / g[-1]
    plain, clipped = m["unclipped"], m["clipped"]
    chance = math.log(m["classes"])
    passed = (growth > 1 and plain["status"] == "diverged" and clipped["status"] == "finished"
              and finite(clipped["train_loss"]) and clipped["train_loss"] < chance)
    numbers = {"sigma_w2": m["sigma_w2"], "layer_factor_theory": math.sqrt(m["chi1"]),
               "grad_growth_h1_over_hL": growth, "grad_growth_theory": m["theory_factor"][0],
               "unclipped_status": plain["status"], "unclipped_steps": plain["steps"],
               "unclipped_max_grad_norm": max(v for v in plain["grad_norm"] if finite(v)) if plain["grad_norm"] else None,
               "clipped_status": clipped["status"], "clipped_final_loss": clipped["train_loss"],
               "clipped_test_accuracy": clipped["test_accuracy"], "chance_loss": chance}
    why = (f"at init the gradient is {growth:.3g}x larger at layer 1 than at layer {m['depth']} (theory "
           f"{m['theory_factor'][0]:.3g}x); without clipping the run {plain['status']} after {plain['steps']} steps"
           f"{' (' + plain['message'] + ')' if plain['message'] else ''}; clipped to norm "
           f"{m['clip_norm']:g}, the same run {clipped['status']} with loss {clipped['train_loss']:.3g} "
           f"(chance {chance:.3g}).")
    return {"C3": Verdict(
        passed,
        "the gradient at init grows from the last hidden layer to the first (factors above 1 multiply up); the "
        "run without clipping stops as diverged (non-finite loss or gradient: the NaN guard); the same run with "
        f"the gradient norm clipped finishes with a training loss below ln(classes) = {chance:.3g}, the loss of "
        "a uniform guess, so it has learned something rather than merely survived.",
        numbers, "clipping", why)}


def figures(m: dict) -> dict:
    fig, (a, b, c) = plots.subplots(1, 3, figsize=(14, 3.8))
    layers = np.arange(1, m["depth"] + 1)
    g = np.array(m["act_grad_norm_at_init"])
    a.semilogy(layers, g / g[-1], "o-", label="measured at init")
    a.semilogy(layers, m["theory_factor"], "--", color="C3", label="theory sqrt(prod chi_1)")
    a.set(xlabel="hidden layer l", ylabel="||dL/dh_l|| / ||dL/dh_L||",
          title=f"gradient grows towards the input (sigma_w^2 = {m['sigma_w2']:.3g})")
    a.legend(fontsize=8)
    for k, label in enumerate(("unclipped", "clipped")):
        r = m[label]
        b.semilogy(r["loss_steps"], r["loss"], color=f"C{k}", label=f"{label} ({r['status']})")
        c.semilogy(r["loss_steps"][:len(r["grad_norm"])], r["grad_norm"], color=f"C{k}", lw=0.8, label=label)
        if r["status"] == "diverged":
            b.axvline(r["steps"], color=f"C{k}", ls=":")
            b.annotate("diverged", (r["steps"], max(v for v in r["loss"] if finite(v)) if r["loss"] else 1),
                       fontsize=8, color=f"C{k}")
    b.axhline(math.log(m["classes"]), color="0.5", ls="--", lw=0.8, label="chance ln(classes)")
    b.set(xlabel="step", ylabel="training loss", title="same seed, same batches")
    c.set(xlabel="step", ylabel="gradient norm before clipping", title="the cliff")
    b.legend(fontsize=8)
    c.legend(fontsize=8)
    fig.tight_layout()
    return {"clipping": fig}
