"""C7, C8, C9: ReLU units die at a high learning rate; Leaky ReLU, PReLU and Maxout do not.

The same MNIST-1D net is trained with plain SGD over a grid of learning rates for each unit.
Afterwards one backward pass over the whole training set counts, per hidden layer, the units
whose incoming weights get an exactly zero gradient: units that can no longer learn (for ReLU,
the units never active on any input; the probe's ``dead`` column is read beside it as a check).
Init: He for the rectifiers (with the leaky slope); LeCun (Var w = 1/fan_in) for Maxout, whose
max of two pieces keeps E[h^2] = E[z^2] and so would double the signal per layer under He.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .. import job, layers, plots
from ..activations import Maxout
from ..config import DataSpec, ModelSpec, TrainConfig
from ..store import Run
from ..optim import OptimizerSpec
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict, finite
from .common import hidden, probe_once

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
    lrs: tuple[float, ...]  # the learning-rate grid
    seeds: int  # runs per rate


_MODEL, _SGD = ModelSpec(depth=4, width=100), OptimizerSpec(optimizer="sgd")
# dying is a chance event near the edge of stability: a fine grid there, and several seeds per rate
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=5, batch_size=32)),
             lrs=(0.01, 0.3, 0.7, 1.0), seeds=3)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=20, batch_size=32)),
            lrs=(0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0), seeds=5)
UNITS = ("relu", "leaky_relu", "prelu", "maxout")
LARGE_SHARE = 0.2  # "a large share": half the seeds' 40%
SMALL_SHARE = 0.01  # at a modest rate almost none die


def _init(act: str) -> str:
    return "lecun" if act == "maxout" else "he"


def _zero_grad_share(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per hidden layer, the share of units whose incoming weights get an exactly zero gradient over (x, y)."""
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(x), y).backward()
    shares = []
    for layer in layers.hidden(net):
        g = layer.weight.grad.reshape(layer.units, -1)  # a unit's rows: all its pieces for a maxout unit
        shares.append(float((g.abs().sum(1) == 0).double().mean()))
    net.zero_grad(set_to_none=True)
    return shares


def _one(cfg: TrainConfig, run: Path) -> dict:
    """Train ``cfg`` (stored in ``run``); then the zero-gradient share per hidden layer (and the probe's dead
    share, PReLU's slopes)."""
    net, d = job.prepare(cfg)
    summary = job.train(cfg, net, d, run=Run.create(run, cfg.model_dump()))
    r = {"status": summary.status, "train_loss": summary.train_loss, "test_accuracy": summary.test_accuracy}
    if summary.status != "finished":
        return r
    shares = _zero_grad_share(net, d.x_train, d.y_train)
    r["zero_grad_share_by_layer"] = shares
    r["zero_grad_share"] = sum(shares) / len(shares)
    if cfg.activation == "relu":
        r["probe_dead_by_layer"] = [row["dead"] for row in hidden(probe_once(net, d.x_train, d.y_train))]
    if cfg.activation == "prelu":
        slopes = torch.cat([m.weight.detach() for m in net if isinstance(m, nn.PReLU)])
        r["prelu_slope_std"] = float(slopes.std())
        r["prelu_slope_max_change"] = float((slopes - 0.25).abs().max())
    return r


def run(size: Size, seed: int, folder) -> dict:
    out = {"lrs": list(size.lrs), "runs": {}}
    for act in UNITS:
        for lr in size.lrs:
            seeds = [_one(size.train.replace(activation=act, init=_init(act), lr=lr, seed=seed + k, data_seed=seed),
                          Path(folder) / f"{act}_lr{lr:g}_seed{seed + k}") for k in range(size.seeds)]
            done = [r for r in seeds if r["status"] == "finished"]
            out["runs"][f"{act}@{lr:g}"] = {
                "seeds": seeds, "finished": len(done), "status": f"{len(done)}/{len(seeds)} finished",
                "zero_grad_share": sum(r["zero_grad_share"] for r in done) / len(done) if done else math.nan,
                "zero_grad_share_max": max((r["zero_grad_share"] for r in done), default=math.nan),
                "test_accuracy": sum(r["test_accuracy"] for r in done) / len(done) if done else math.nan,
                "prelu_slope_max_change": max((r.get("prelu_slope_max_change", 0.0) for r in done), default=0.0)}
    out["special_cases"] = _special_cases(seed)
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


def _worst(m: dict, act: str) -> float:
    """The largest seed-mean zero-gradient share over the rates with finished runs."""
    shares = [m["runs"][f"{act}@{lr:g}"]["zero_grad_share"] for lr in m["lrs"]]
    return max((s for s in shares if finite(s)), default=math.nan)


def verdicts(m: dict) -> dict[str, Verdict]:
    runs, lrs = m["runs"], m["lrs"]
    relu = [runs[f"relu@{lr:g}"]["zero_grad_share"] for lr in lrs]
    single = max((r["zero_grad_share"], r["zero_grad_share_by_layer"]) for rate in lrs
                 for r in runs[f"relu@{rate:g}"]["seeds"] if r["status"] == "finished")
    c7 = runs[f"relu@{lrs[0]:g}"]["zero_grad_share_max"] <= SMALL_SHARE and single[0] >= LARGE_SHARE
    finished = {a: [runs[f"{a}@{lr:g}"] for lr in lrs if runs[f"{a}@{lr:g}"]["finished"]] for a in UNITS}
    prelu_moved = max((r.get("prelu_slope_max_change", 0.0) for r in finished["prelu"]), default=0.0)

    def never_dead(act: str) -> bool:
        return bool(finished[act]) and all(r["zero_grad_share_max"] == 0 for r in finished[act])

    c8 = never_dead("leaky_relu") and never_dead("prelu") and prelu_moved > 0.01
    sc = m["special_cases"]
    c9 = (never_dead("maxout") and sc["maxout_vs_relu_max_abs_diff"] < 1e-12
          and sc["maxout_vs_leaky_relu_max_abs_diff"] < 1e-12 and sc["maxout_params"] == 2 * sc["linear_params"])
    status = lambda a: ", ".join(f"{lr:g}: {runs[f'{a}@{lr:g}']['status']}" for lr in lrs)  # noqa: E731
    return {
        "C7": Verdict(c7, f"share of hidden units with an exactly zero gradient over the whole training set after "
                          f"training (runs that finished): <= {SMALL_SHARE:g} in every run at the smallest rate, and "
                          f">= {LARGE_SHARE:g} (half the seeds' 'up to 40%') in at least one run of the grid.",
                      {**{f"relu_dead_share_lr_{lr:g}": s for lr, s in zip(lrs, relu)},
                       "relu_worst_run_dead_share": single[0], "relu_worst_run_dead_by_layer": single[1]},
                      "dead_units",
                      f"ReLU dead share (mean over seeds) {', '.join(f'{s:.1%}' for s in relu)} at lr "
                      f"{', '.join(f'{lr:g}' for lr in lrs)}; the worst run lost {single[0]:.1%} of its units, "
                      f"by layer {', '.join(f'{s:.0%}' for s in single[1])}."),
        "C8": Verdict(c8, "Leaky ReLU and PReLU: no unit with a zero gradient in any finished run of the grid, and "
                          "PReLU's per-unit slopes moved away from their initial 0.25 (by more than 0.01): they are "
                          "learned. Runs that diverge are listed, not counted.",
                      {"leaky_relu_max_dead_share": _worst(m, "leaky_relu"), "prelu_max_dead_share": _worst(m, "prelu"),
                       "prelu_slope_max_change": prelu_moved, "leaky_relu_runs": status("leaky_relu"),
                       "prelu_runs": status("prelu")},
                      "dead_units",
                      f"zero-gradient share: leaky {_worst(m, 'leaky_relu'):.1%}, PReLU {_worst(m, 'prelu'):.1%} "
                      f"at most; PReLU slopes moved up to {prelu_moved:.3g} from 0.25."),
        "C9": Verdict(c9, "Maxout: no unit with a zero gradient in any finished run; with pieces (W, b), (0, 0) it "
                          "equals ReLU and with (W, b), (0.01 W, 0.01 b) Leaky ReLU (float64, to 1e-12); it holds "
                          "exactly twice the parameters of a Linear layer of the same width.",
                      {"maxout_max_dead_share": _worst(m, "maxout"), **sc, "maxout_runs": status("maxout")},
                      "dead_units",
                      f"maxout zero-gradient share {_worst(m, 'maxout'):.1%} at most; {sc['maxout_params']} "
                      f"parameters against {sc['linear_params']}; ReLU as maxout differs by "
                      f"{sc['maxout_vs_relu_max_abs_diff']:.2g}."),
    }


def figures(m: dict) -> dict:
    fig, (left, right) = plots.subplots(1, 2, figsize=(12, 4))
    lrs = m["lrs"]
    for k, act in enumerate(UNITS):
        shares = [m["runs"][f"{act}@{lr:g}"].get("zero_grad_share", math.nan) for lr in lrs]
        left.plot(lrs, [100 * s for s in shares], "o-", color=f"C{k}", label=act)
        for lr in lrs:
            if not m["runs"][f"{act}@{lr:g}"]["finished"]:
                left.plot([lr], [0], "x", color=f"C{k}", ms=10)
        acc = [m["runs"][f"{act}@{lr:g}"]["test_accuracy"] for lr in lrs]
        right.plot(lrs, acc, "o-", color=f"C{k}", label=act)
    left.set(xscale="log", xlabel="learning rate (SGD)", ylabel="% hidden units with zero gradient",
             title="C7-C9: dead units after training, mean over seeds (x: all diverged)")
    right.set(xscale="log", xlabel="learning rate (SGD)", ylabel="test accuracy", title="MNIST-1D test accuracy")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    return {"dead_units": fig}
