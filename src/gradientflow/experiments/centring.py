"""C4 and C19: all-positive inputs make a neuron's weights move together (zig-zag); centring helps.

C4, three views:
- a 2-D neuron z = w . x fitted by SGD (batch 1) towards w* = (1, -1), fed sigmoid outputs
  (all positive) or the same inputs centred. With positive inputs both components of
  dL/dw = (z - y) x share a sign at every step, so the path zig-zags. Speed (the median number of
  steps over several orders of the same inputs) is compared at each input's best learning rate
  from the same grid (a fixed rate would favour neither: it is the curvature E[x x^T] that the
  mean inflates, and with it the largest stable rate it lowers);
- the probe's sign coherence of a layer fed by sigmoid outputs against one fed by tanh outputs,
  at batch size 1 and at a mini-batch (averaging softens it);
- a sigmoid net against the same net with s(x) - 1/2 (identical slopes, centred output), each at
  its best rate of a small grid, over several seeds, compared seed by seed.
C19: the same net trained on MNIST-1D standardised against the same inputs shifted to be all
non-negative (``normalize="shift"``: same scale, minimum at 0), for a ReLU and a tanh net: each
normalisation at its own best rate of a grid (the lowest median final training loss), over seeds,
the nets of one (activation, normalisation) trained together by the batched trainer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import job, optim, plots
from ..config import DataSpec, TrainConfig
from ..optim import OptimizerSpec
from ..train import LoopSpec, fit
from ..probes import watch
from . import claim
from .claim import Claim, Verdict
from .seeds import median_diverged_last

CLAIMS = (
    Claim("C4", "If every input x_i of a neuron is positive (e.g. the outputs of a sigmoid layer), dL/dw_i = "
                "x_i dL/dz has the same sign for every i, so all weights of that neuron move up together or down "
                "together; reaching an optimum that needs some up and some down takes a zig-zag path and "
                "converges slowly. Averaging over a mini-batch softens this.", "000, 002, 003"),
    Claim("C19", "Centring (normalising) the inputs speeds up convergence.", "000, 004"),
)


class Size(claim.Size):
    toy_samples: int  # inputs of the 2-D neuron (one SGD step each)
    orders: int  # orders of those inputs the 2-D neuron is run over
    data: DataSpec  # the MNIST-1D split of the real networks
    epochs: int  # of each real network
    net_rates: tuple[float, ...]  # the sigmoid nets' learning-rate grid
    seeds: int  # sigmoid nets per (activation, rate)
    probe_steps: int  # SGD steps under the probe for the sign coherence
    minibatch: int  # the mini-batch that softens the zig-zag
    centring_rates: tuple[float, ...]  # C19's learning-rate grid (a factor 2 apart)
    centring_seeds: int  # C19's nets per (activation, normalisation, rate)


QUICK = Size(toy_samples=1000, orders=5, data=DataSpec(n_train=2000, n_test=500), epochs=10, net_rates=(0.1, 0.3, 1.0),
             seeds=3, probe_steps=50, minibatch=64, centring_rates=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8),
             centring_seeds=5)
FULL = Size(toy_samples=4000, orders=10, data=DataSpec(n_train=4000, n_test=1000), epochs=30,
            net_rates=(0.03, 0.1, 0.3, 1.0), seeds=5, probe_steps=200, minibatch=64,
            centring_rates=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8), centring_seeds=7)
TOY_RATES = tuple(0.25 * 2 ** k for k in range(8))  # 0.25 ... 32
TOY_TOL = 0.01  # converged: ||w - w*|| below this
SLOWER = 1.5  # "converges slowly": at least half again as many steps at the best rate
COHERENT = 0.999  # batch 1, sigmoid-fed: every entry of a unit's weight gradient has one sign
MIXED = 0.9  # a zero-centred input gives mixed signs: clearly below 1


def _toy(x: torch.Tensor, lr: float, steps: int, keep_path: bool):
    """SGD (batch 1) on 1/2 (w . x - w* . x)^2 from w = 0; steps to reach w* and the path."""
    target = torch.tensor([1.0, -1.0], dtype=x.dtype)
    y = x @ target
    w = torch.zeros(2, dtype=x.dtype, requires_grad=True)
    opt = optim.make("sgd", [w], lr=lr)
    path, same_sign, hit = [[0.0, 0.0]], 0, None
    for t in range(min(steps, len(x))):
        loss = 0.5 * (x[t] @ w - y[t]) ** 2
        opt.zero_grad()
        loss.backward()
        same_sign += int(torch.sign(w.grad[0]) == torch.sign(w.grad[1]))
        opt.step()
        if keep_path:
            path.append(w.detach().tolist())
        if not torch.isfinite(w).all():
            break
        if (w.detach() - target).norm() < TOY_TOL:
            hit = t + 1
            break
    return hit, same_sign / max(t + 1, 1), path


class CentredSigmoid(nn.Module):
    """s(x) - 1/2: the sigmoid's slopes with a zero-centred output (C4's control)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) - 0.5


def _config(size: Size, seed: int, **fields) -> TrainConfig:
    """A real network on the size's MNIST-1D split, trained by SGD."""
    return TrainConfig.compose(size.data, OptimizerSpec(optimizer="sgd"), LoopSpec(epochs=size.epochs),
                               seed=seed, data_seed=seed, **fields)


def _coherence(act: str, batch: int, size: Size, seed: int) -> float:
    """Sign coherence of the second hidden layer (fed by the first's outputs) over a short SGD run."""
    cfg = _config(size, seed, depth=3, width=100, activation=act, init="xavier", lr=0.01, batch_size=batch)
    net, d = job.prepare(cfg)
    opt = optim.make("sgd", net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    with watch(net, exact=True) as probe:  # the claims read whole batches, every step
        for _ in range(size.probe_steps):
            idx = torch.randint(0, len(d.y_train), (batch,), generator=g)
            loss = nn.functional.cross_entropy(net(d.x_train[idx]), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        rows = probe.summary().to_dict("records")
    return float(rows[1]["sign_coherence"])


def _sigmoid_net(size: Size, seed: int, data_seed: int, lr: float, centred: bool) -> dict:
    """A 3 x 100 sigmoid net (Xavier, SGD) on MNIST-1D; with ``centred`` its sigmoids are s(x) - 1/2."""
    cfg = _config(size, seed, depth=3, width=100, activation="sigmoid", init="xavier", lr=lr, batch_size=32)
    net, d = job.prepare(cfg.replace(data_seed=data_seed))
    if centred:
        net = nn.Sequential(*[CentredSigmoid() if isinstance(m, nn.Sigmoid) else m for m in net])
    parts = cfg.parts
    s = fit(net, d, parts.optimizer, parts.loop)
    ok = s.status == "finished" and math.isfinite(s.train_loss)
    return {"final": s.train_loss if ok else None, "epochs": [h["train_loss"] for h in s.history]}


def run(size: Size, seed: int, folder) -> dict:
    g = torch.Generator().manual_seed(seed)
    positive = torch.sigmoid(2 * torch.randn(size.toy_samples, 2, generator=g, dtype=torch.float64))
    inputs = {"positive": positive, "centred": positive - positive.mean(0)}
    orders = [torch.randperm(size.toy_samples, generator=g) for _ in range(size.orders)]
    toy = {}
    for name, x in inputs.items():
        hits = {lr: [_toy(x[o], lr, len(x), keep_path=False)[0] for o in orders] for lr in TOY_RATES}
        best = min(TOY_RATES, key=lambda lr: (median_diverged_last(hits[lr]), lr))
        _, same, path = _toy(x[orders[0]], best, 200, keep_path=True)
        toy[name] = {"steps_by_lr": {str(k): v for k, v in hits.items()}, "best_lr": best,
                     "best_steps": median_diverged_last(hits[best]), "same_sign_share": same, "path": path,
                     "curvature": (x.T @ x / len(x)).tolist()}
    coherence = {f"{act}_batch{b}": _coherence(act, b, size, seed)
                 for act in ("sigmoid", "tanh") for b in (1, size.minibatch)}
    nets = {"rates": list(size.net_rates)}
    for centred in (False, True):
        nets["centred_sigmoid" if centred else "sigmoid"] = [
            [_sigmoid_net(size, seed + k, seed, lr, centred) for k in range(size.seeds)] for lr in size.net_rates]
    data = {act_norm: _centring_grid(size, seed, *act_norm.split("_"))
            for act_norm in ("relu_standardize", "relu_shift", "tanh_standardize", "tanh_shift")}
    return {"toy": toy, "coherence": coherence, "sigmoid_nets": nets, "data": data, "minibatch": size.minibatch}


def _centring_grid(size: Size, seed: int, act: str, norm: str) -> dict:
    """C19's cell: a 2 x 100 net (He for ReLU, Xavier for tanh; SGD, batch 32) on the normalised MNIST-1D at
    every rate of the grid, ``size.centring_seeds`` seeds each (data fixed by ``seed``), trained together:
    per rate, per seed, the final training loss (None: diverged) and the loss at each epoch's end."""
    from ..sweep import batched

    cfgs = [_config(size, seed + k, depth=2, width=100, activation=act, init="he" if act == "relu" else "xavier",
                    lr=lr, batch_size=32, normalize=norm).replace(data_seed=seed)
            for lr in size.centring_rates for k in range(size.centring_seeds)]
    summaries = batched.train(cfgs)
    d = job.dataset(cfgs[0])
    k = size.centring_seeds
    cells = []
    for i, lr in enumerate(size.centring_rates):
        runs = summaries[i * k:(i + 1) * k]
        ok = [r.status == "finished" and math.isfinite(r.train_loss) for r in runs]
        cells.append({"lr": lr, "final": [r.train_loss if good else None for r, good in zip(runs, ok)],
                      "epochs": [[h["train_loss"] for h in r.history] if good else None for r, good in zip(runs, ok)]})
    return {"activation": act, "normalize": norm, "cells": cells,
            "input_mean_over_std": float((d.x_train.mean() / d.x_train.std()).abs())}


def centring_compared(m: dict) -> dict:
    """C19 per activation: each normalisation at its best rate (the lowest median final loss, a diverged seed
    counting as infinite), its median and per-seed losses, the share of seeds (paired) on which the standardised
    net ends lower, and the first epoch at which its median loss reaches the shifted net's final median."""
    out = {}
    for act in ("relu", "tanh"):
        best = {}
        for norm in ("standardize", "shift"):
            cells = m["data"][f"{act}_{norm}"]["cells"]
            cell = min(cells, key=lambda c: (median_diverged_last(c["final"]), c["lr"]))
            curves = [e for e in cell["epochs"] if e is not None]
            median_curve = np.median(np.array(curves), axis=0).tolist() if curves else []
            best[norm] = {"lr": cell["lr"], "median": median_diverged_last(cell["final"]), "seeds": cell["final"],
                          "median_curve": median_curve}
        pairs = list(zip(best["standardize"]["seeds"], best["shift"]["seeds"]))
        lower = [a is not None and (b is None or a < b) for a, b in pairs]
        target = best["shift"]["median"]
        reach = next((e + 1 for e, v in enumerate(best["standardize"]["median_curve"]) if v <= target), None)
        out[act] = {**best, "lower_share": sum(lower) / len(lower), "epoch_reaching_shifted_final": reach}
    return out


def nets_compared(m: dict) -> dict:
    """Each sigmoid net at its best rate (the lowest median final loss; a diverged seed counts as infinite): its
    rate, median and per-seed losses, and whether the centred net is lower on every seed (paired by seed)."""
    nets, out = m["sigmoid_nets"], {}
    for label in ("sigmoid", "centred_sigmoid"):
        finals = [[math.inf if r["final"] is None else r["final"] for r in cell] for cell in nets[label]]
        k = min(range(len(finals)), key=lambda i: (median_diverged_last(finals[i]), i))
        out[label] = {"rate": nets["rates"][k], "median": median_diverged_last(finals[k]), "seeds": finals[k]}
    pairs = zip(out["centred_sigmoid"]["seeds"], out["sigmoid"]["seeds"])
    out["centred_lower_on_every_seed"] = all(c < s for c, s in pairs)
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    toy, coh = m["toy"], m["coherence"]
    b = m["minibatch"]
    pos, cen = (math.inf if toy[k]["best_steps"] is None else toy[k]["best_steps"] for k in ("positive", "centred"))
    slower = math.isfinite(cen) and pos >= SLOWER * cen  # never converging with positive inputs is slower still
    nets = nets_compared(m)
    c4 = (coh["sigmoid_batch1"] >= COHERENT and coh["tanh_batch1"] < MIXED
          and coh[f"sigmoid_batch{b}"] < coh["sigmoid_batch1"] and slower and nets["centred_lower_on_every_seed"])
    sig, csig = nets["sigmoid"], nets["centred_sigmoid"]
    c4_numbers = {"coherence_sigmoid_fed_batch1": coh["sigmoid_batch1"], "coherence_tanh_fed_batch1": coh["tanh_batch1"],
                  f"coherence_sigmoid_fed_batch{b}": coh[f"sigmoid_batch{b}"],
                  f"coherence_tanh_fed_batch{b}": coh[f"tanh_batch{b}"],
                  "toy_same_sign_share_positive": toy["positive"]["same_sign_share"],
                  "toy_same_sign_share_centred": toy["centred"]["same_sign_share"],
                  "toy_steps_positive": pos, "toy_steps_centred": cen,
                  "toy_best_lr_positive": toy["positive"]["best_lr"], "toy_best_lr_centred": toy["centred"]["best_lr"],
                  "net_best_rate_sigmoid": sig["rate"], "net_best_rate_centred_sigmoid": csig["rate"],
                  "net_final_loss_sigmoid": sig["seeds"], "net_final_loss_centred_sigmoid": csig["seeds"],
                  "net_centred_lower_on_every_seed": nets["centred_lower_on_every_seed"]}
    data, cmp19 = m["data"], centring_compared(m)
    c19 = all(r["standardize"]["median"] < r["shift"]["median"] and r["lower_share"] > 0.5 for r in cmp19.values())
    c19_numbers = {f"{a}_{n}_{k}": cmp19[a][n][k] for a in cmp19 for n in ("standardize", "shift")
                   for k in ("lr", "median", "seeds")}
    c19_numbers.update({f"{a}_standardized_lower_share": r["lower_share"] for a, r in cmp19.items()})
    c19_numbers.update({f"{a}_epoch_reaching_shifted_final": r["epoch_reaching_shifted_final"]
                        for a, r in cmp19.items()})
    c19_numbers.update({f"{n}_input_mean_over_std": data[f"relu_{n}"]["input_mean_over_std"]
                        for n in ("standardize", "shift")})
    seeds19 = len(next(iter(data.values()))["cells"][0]["final"])
    epochs19 = len(cmp19["relu"]["standardize"]["median_curve"])
    return {
        "C4": Verdict(
            c4, f"batch 1: the sigmoid-fed layer's sign coherence is >= {COHERENT:g} (every weight of a unit moves "
                f"the same way) and the tanh-fed layer's < {MIXED:g}; at batch {b} the sigmoid-fed coherence is lower "
                f"than at batch 1 (averaging softens it); the 2-D neuron with positive inputs needs >= {SLOWER:g}x "
                "the SGD steps of the centred one (median over orders of the inputs), each at its best rate of the "
                "same grid; and on MNIST-1D a sigmoid net ends with a higher training loss than the same net with "
                "s(x) - 1/2 on every seed, each at its best rate.",
            c4_numbers, "zigzag",
            f"sign coherence at batch 1: {coh['sigmoid_batch1']:.3g} (sigmoid-fed) vs {coh['tanh_batch1']:.3g} "
            f"(tanh-fed); at batch {b}: {coh[f'sigmoid_batch{b}']:.3g}. 2-D neuron: {pos:g} steps with positive inputs "
            f"against {cen:g} centred (median over orders); both components of the gradient shared a sign in "
            f"{100 * toy['positive']['same_sign_share']:.0f}% of steps (centred: "
            f"{100 * toy['centred']['same_sign_share']:.0f}%). Sigmoid net at its best rate {sig['rate']:g}: median "
            f"loss {sig['median']:.3g}; centred sigmoid at {csig['rate']:g}: {csig['median']:.3g}; the centred net is "
            f"{'lower on every seed' if nets['centred_lower_on_every_seed'] else 'not lower on every seed'} "
            f"({', '.join(f'{c:.3g} vs {s:.3g}' for c, s in zip(csig['seeds'], sig['seeds']))})."),
        "C19": Verdict(
            c19, f"MNIST-1D, a ReLU and a tanh net, each input normalisation at its own best rate of "
                 f"{len(data['relu_shift']['cells'])} (a factor 2 apart), {seeds19} seeds paired by seed: standardised "
                 "inputs end with a lower median training loss than the same inputs shifted to be non-negative (same "
                 "scale), and lower on a majority of the seeds.",
            c19_numbers, "centring",
            f"median final training loss after {epochs19} epochs, standardised vs shifted, each at its best rate: "
            + "; ".join(f"{a} {r['standardize']['median']:.3g} (alpha {r['standardize']['lr']:g}) vs "
                        f"{r['shift']['median']:.3g} (alpha {r['shift']['lr']:g}), lower on {r['lower_share']:.0%} of "
                        f"seeds, the shifted net's final loss reached at epoch "
                        f"{r['epoch_reaching_shifted_final'] or 'never'}"
                        for a, r in cmp19.items()) + "."),
    }


def figures(m: dict) -> dict:
    toy = m["toy"]
    fig, axes = plots.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    w1, w2 = np.meshgrid(np.linspace(-0.5, 2.0, 101), np.linspace(-1.5, 1.0, 101))
    for k, name in enumerate(("positive", "centred")):
        c = np.array(toy[name]["curvature"])  # E[x x^T]: the loss is 1/2 (w - w*)^T C (w - w*)
        d1, d2 = w1 - 1.0, w2 + 1.0
        ax.contour(w1, w2, 0.5 * (c[0, 0] * d1 ** 2 + 2 * c[0, 1] * d1 * d2 + c[1, 1] * d2 ** 2), levels=8,
                   colors=f"C{k}", linewidths=0.5, alpha=0.5)
        path = np.array(toy[name]["path"])
        ax.plot(path[:, 0], path[:, 1], ".-", color=f"C{k}", lw=0.8, ms=3,
                label=f"{name} inputs, lr {toy[name]['best_lr']:g}: {toy[name]['best_steps']} steps (median)")
    ax.plot([1], [-1], "k*", ms=12, label="optimum w* = (1, -1)")
    ax.plot([0], [0], "ko", ms=5)
    ax.set(xlabel="w1", ylabel="w2", title="C4: one neuron, SGD batch 1")
    ax.legend(fontsize=7)
    ax.set_aspect("equal")
    coh = m["coherence"]
    b = m["minibatch"]
    labels = ["sigmoid-fed\nbatch 1", "tanh-fed\nbatch 1", f"sigmoid-fed\nbatch {b}", f"tanh-fed\nbatch {b}"]
    values = [coh["sigmoid_batch1"], coh["tanh_batch1"], coh[f"sigmoid_batch{b}"], coh[f"tanh_batch{b}"]]
    axes[1].bar(labels, values, color=["C0", "C1", "C0", "C1"])
    axes[1].axhline(0.5, color="0.5", ls="--", lw=0.8)
    axes[1].set(ylim=(0, 1.05), ylabel="share of a unit's weight gradients with the majority sign",
                title="sign coherence (probe), layer 2")
    nets = m["sigmoid_nets"]
    for k, name in enumerate(("sigmoid", "centred_sigmoid")):
        finals = [[r["final"] for r in cell] for cell in nets[name]]
        for lr, cell in zip(nets["rates"], finals):
            axes[2].scatter([lr] * sum(v is not None for v in cell), [v for v in cell if v is not None], s=10,
                            color=f"C{k}", alpha=0.6)
        axes[2].plot(nets["rates"], [median_diverged_last(c) for c in finals], "o-",
                     ms=3, color=f"C{k}", label=f"{name} (median; dots: seeds)")
    axes[2].set(xscale="log", xlabel="learning rate", ylabel="final training loss",
                title="sigmoid vs s(x) - 1/2 (same slopes), MNIST-1D")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig2, (ax, grid) = plots.subplots(1, 2, figsize=(13, 4))
    cmp19 = centring_compared(m)
    for k, (act, r) in enumerate(cmp19.items()):
        for norm, style in (("standardize", "o-"), ("shift", "s--")):
            cell = next(c for c in m["data"][f"{act}_{norm}"]["cells"] if c["lr"] == r[norm]["lr"])
            for curve in cell["epochs"]:
                if curve is not None:
                    ax.plot(range(1, len(curve) + 1), curve, "-", lw=0.5, alpha=0.3, color=f"C{2 * k + (norm == 'shift')}")
            curve = r[norm]["median_curve"]
            mean_std = m["data"][f"{act}_{norm}"]["input_mean_over_std"]
            ax.plot(range(1, len(curve) + 1), curve, style, ms=3, color=f"C{2 * k + (norm == 'shift')}",
                    label=f"{act}, {norm} (alpha {r[norm]['lr']:g}; |mean|/std = {mean_std:.2g})")
            cells = m["data"][f"{act}_{norm}"]["cells"]
            grid.plot([c["lr"] for c in cells], [median_diverged_last(c["final"]) for c in cells], style, ms=3,
                      color=f"C{2 * k + (norm == 'shift')}", label=f"{act}, {norm}")
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
           title="C19: MNIST-1D, centred vs shifted inputs, each at its best rate (median; thin: seeds)")
    ax.legend(fontsize=7)
    grid.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="median final training loss",
             title="the rate grid (no point: most seeds diverged)")
    rates = [c["lr"] for c in m["data"]["relu_shift"]["cells"]]
    grid.set_xticks(rates, [f"{r:g}" for r in rates])
    grid.set_xticks([], minor=True)
    grid.legend(fontsize=7)
    fig2.tight_layout()
    return {"zigzag": fig, "centring": fig2}
