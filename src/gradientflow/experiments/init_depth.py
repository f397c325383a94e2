"""C15, C16, C17: the 10 x 500 study of CS231n, with the mean-field theory's prediction beside it.

Unit-Gaussian data go through fresh 10-layer, 500-unit nets (``propagate``): tanh with
N(0, 0.01^2), N(0, 1) and Xavier weights; ReLU with Xavier and He. For each hidden layer the
measured mean, std and saturated share stand beside ``theory.predict_layers`` (sigma_w^2 =
fan_in Var w, the layer's q from the length map; Poole et al. 2016). One backward pass under
the probe adds ||dL/dh|| per layer for the tiny init (C15's "gradients vanish").

Each net is drawn ``draws`` times (weights and inputs): a verdict reads the per-layer median over
the draws and states the spread of its statistic, so that no single weight draw decides it; the
histograms show the first draw.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import activations, init, model, plots, theory
from ..propagate import propagate
from . import claim
from .claim import Claim, Verdict
from .common import gaussian_batch, hidden, probe_once
from .seeds import spread

CLAIMS = (
    Claim("C15", "In a net of 10 hidden tanh layers of 500 units fed unit-Gaussian data, weights drawn with a tiny "
                 "scale (0.01) make the activations collapse towards 0 layer after layer (and the gradients vanish); "
                 "weights of scale 1 saturate almost every unit at +-1.", "001, 004"),
    Claim("C16", "Xavier: Var(w) = 1/N (N = fan-in) keeps the variance of tanh activations roughly constant through "
                 "depth; with ReLU it does not: the activations shrink layer after layer.", "001, 004"),
    Claim("C17", "He (MSRA): Var(w) = 2/N keeps ReLU activations stable through depth.", "001, 004"),
)
class Size(claim.Size):
    depth: int  # hidden layers: the seeds' 10
    width: int  # units per layer: the seeds' 500
    batch: int  # unit-Gaussian inputs
    draws: int  # independent weight (and input) draws per net


QUICK = Size(depth=10, width=500, batch=1000, draws=5)
FULL = Size(depth=10, width=500, batch=5000, draws=10)
DRAW_STRIDE = 7919  # draw d of seed s uses the generator seed s + 7919 d (draw 0: the seed itself)
NETS = {"tanh_small": ("tanh", "normal", 0.01), "tanh_large": ("tanh", "normal", 1.0),
        "tanh_xavier": ("tanh", "xavier", None), "relu_xavier": ("relu", "xavier", None), "relu_he": ("relu", "he", None)}

COLLAPSE = 1e-3  # "collapse towards 0": the last layer's std under a thousandth of the first's
SATURATED = 0.8  # "almost every unit": at least 80% of pre-activations in the saturated region, every layer
DECADE = 10.0  # "roughly constant" vs "shrinks": the std changes by less / more than 10x over the 10 layers
STABLE = 2.0  # He "stable": the std stays within a factor 2 of the first layer's
# theory and measurement agree: every layer's std within 25%. The infinite-width theory predicts the average over
# weight draws; one draw of a ReLU net of width n wanders from it, log ||h_L||^2 having a variance of about 5 L / n
# (Hanin & Nica 2019): 0.1 here, i.e. about 16% in the std at layer 10. tanh nets stay far closer.
THEORY = 0.25


def run(size: Size, seed: int, folder) -> dict:
    depth, width = size.depth, size.width
    out = {"depth": depth, "width": width, "nets": {}}
    z = np.random.default_rng(seed).standard_normal(50_000)
    for key, (act, init_name, std) in NETS.items():
        scale = init.Scale(std=std) if std is not None else init.Scale()
        drawn = []
        for d in range(size.draws):
            g = torch.Generator().manual_seed(seed + DRAW_STRIDE * d)
            net = model.mlp(width, width, depth, activation=act, init_name=init_name, scale=scale, generator=g)
            x = torch.randn(size.batch, width, generator=g)  # as `gradientflow propagate` draws it
            drawn.append(propagate(net, x))
        stats, outputs = drawn[0]
        per_draw = {k: [[getattr(st, k) for st in draw_stats] for draw_stats, _ in drawn]
                    for k in ("mean", "std", "saturated", "zero")}
        median = {k: np.median(np.array(v), axis=0).tolist() for k, v in per_draw.items()}  # per layer
        sw2, _ = init.meanfield_scales(init_name, width, width, scale)
        pred = theory.predict_layers(act, depth, sw2, 0.0, input_var=1.0)
        edges = np.linspace(-1, 1, 61) if act == "tanh" else np.linspace(0, max(float(outputs[0].max()), 1e-6), 61)
        record = {"activation": act, "init": init_name, "std": std, "sigma_w2": sw2,
                  "mean": median["mean"], "act_std": median["std"], "act_std_draws": per_draw["std"],
                  "saturated": median["saturated"], "zero": median["zero"],
                  "theory_std": [p.std for p in pred], "theory_mean": [p.mean for p in pred],
                  "theory_q": [p.q for p in pred],
                  "edges": edges.tolist(),
                  "hist": [np.histogram(h.double().numpy().ravel(), bins=edges)[0].tolist() for h in outputs],
                  "theory_hist": [np.histogram(activations.get(act).numpy(np.sqrt(p.q) * z), bins=edges)[0].tolist()
                                  for p in pred]}
        if key == "tanh_small":
            g = torch.Generator().manual_seed(seed)
            readout = model.mlp(width, width, depth, 10, activation=act, init_name=init_name, scale=scale, generator=g)
            xb, yb = gaussian_batch(size.batch, width, 10, g)
            record["act_grad_norm"] = [r["act_grad_norm"] for r in hidden(probe_once(readout, xb, yb))]
        out["nets"][key] = record
    return out


def _theory_error(r: dict) -> float:
    """Largest relative gap between measured and predicted std over the layers."""
    return max(abs(m - p) / p for m, p in zip(r["act_std"], r["theory_std"]) if p > 0)


def _shrink(r: dict) -> float:
    """The std's fall from layer 1 to the last: the median over the draws of each draw's ratio."""
    return _shrinks(r).median


def _shrinks(r: dict):
    """Each draw's std at layer 1 over its std at the last layer (one draw for data without draws)."""
    draws = r.get("act_std_draws") or [r["act_std"]]
    return spread([d[0] / d[-1] for d in draws])


def _band(r: dict) -> str:
    s = _shrinks(r)
    return f"{s.median:.3g}x (10-90% of {len(s.values)} draws: {s.q10:.3g}-{s.q90:.3g})"


def verdicts(m: dict) -> dict[str, Verdict]:
    n = m["nets"]
    small, large = n["tanh_small"], n["tanh_large"]
    collapse = small["act_std"][-1] / small["act_std"][0]
    g = small["act_grad_norm"]
    grad_ratio = g[0] / g[-1]
    c15 = collapse < COLLAPSE and grad_ratio < COLLAPSE and min(large["saturated"]) >= SATURATED
    tx, rx, rh = n["tanh_xavier"], n["relu_xavier"], n["relu_he"]
    c16 = (_shrink(tx) < DECADE and _shrink(rx) > DECADE and _theory_error(tx) < THEORY and _theory_error(rx) < THEORY)
    c17 = 1 / STABLE <= _shrink(rh) <= STABLE and _theory_error(rh) < THEORY
    return {
        "C15": Verdict(
            c15, f"tiny init: last-layer std below {COLLAPSE:g} of the first layer's, and ||dL/dh_1|| below "
                 f"{COLLAPSE:g} of ||dL/dh_10||; scale 1: at least {SATURATED:.0%} of the pre-activations in tanh's "
                 "saturated region (|f'| < 5% of its peak) in every layer.",
            {"tiny_std_layer1": small["act_std"][0], "tiny_std_layer10": small["act_std"][-1],
             "tiny_std_theory_layer10": small["theory_std"][-1], "tiny_grad_ratio_h1_over_h10": grad_ratio,
             "large_saturated_min_over_layers": min(large["saturated"])},
            "init_histograms",
            f"std 0.01: the std falls from {small['act_std'][0]:.3g} to {small['act_std'][-1]:.3g} (theory "
            f"{small['theory_std'][-1]:.3g}) and ||dL/dh_1|| / ||dL/dh_10|| = {grad_ratio:.3g}; std 1: "
            f"{min(large['saturated']):.1%} to {max(large['saturated']):.1%} of units saturated per layer."),
        "C16": Verdict(
            c16, f"over {len(_shrinks(tx).values)} weight draws: tanh/Xavier's std changes by less than {DECADE:g}x "
                 f"from layer 1 to 10 while ReLU/Xavier's shrinks by more than {DECADE:g}x (medians of each draw's "
                 f"ratio), and the theory predicts every layer's median std of both within {THEORY:.0%}.",
            {"tanh_xavier_std_1_over_10": _shrink(tx), "relu_xavier_std_1_over_10": _shrink(rx),
             "tanh_xavier_std_1_over_10_spread": _shrinks(tx).to_dict(),
             "relu_xavier_std_1_over_10_spread": _shrinks(rx).to_dict(),
             "tanh_xavier_theory_max_rel_error": _theory_error(tx), "relu_xavier_theory_max_rel_error": _theory_error(rx)},
            "init_std",
            f"median std layer 1 -> 10: tanh/Xavier {tx['act_std'][0]:.3g} -> {tx['act_std'][-1]:.3g} (falls "
            f"{_band(tx)}); ReLU/Xavier {rx['act_std'][0]:.3g} -> {rx['act_std'][-1]:.3g} (falls {_band(rx)}); largest "
            f"theory error {_theory_error(tx):.0%} and {_theory_error(rx):.0%}. tanh/Xavier still "
            f"decays slowly: sigma_w^2 = 1 is tanh's critical point, where the theory's q falls from "
            f"{tx['theory_q'][0]:.3g} to {tx['theory_q'][-1]:.3g} over {len(tx['theory_q'])} layers "
            f"(x{tx['theory_q'][0] / tx['theory_q'][-1]:.3g}) rather than staying fixed."),
        "C17": Verdict(
            c17, f"over {len(_shrinks(rh).values)} weight draws: ReLU/He's std stays within a factor {STABLE:g} of the "
                 f"first layer's through layer 10 (the median of each draw's ratio) and the theory predicts every "
                 f"layer's median std within {THEORY:.0%}.",
            {"relu_he_std_1_over_10": _shrink(rh), "relu_he_std_1_over_10_spread": _shrinks(rh).to_dict(),
             "relu_he_theory_max_rel_error": _theory_error(rh),
             "relu_he_std_layer1": rh["act_std"][0], "relu_he_std_layer10": rh["act_std"][-1]},
            "init_std",
            f"ReLU/He median std {rh['act_std'][0]:.3g} -> {rh['act_std'][-1]:.3g} (theory "
            f"{rh['theory_std'][0]:.3g} -> {rh['theory_std'][-1]:.3g}); layer 1 over layer 10: {_band(rh)}; largest "
            f"theory error {_theory_error(rh):.0%}."),
    }


def _label(r: dict) -> str:
    return f"{r['activation']} / {r['init']}" + (f" std {r['std']:g}" if r["std"] is not None else "")


def figures(m: dict) -> dict:
    nets = m["nets"]
    depth = m["depth"]
    fig, axes = plots.subplots(len(nets), depth, figsize=(1.5 * depth + 1.5, 1.45 * len(nets) + 0.8), squeeze=False)
    for row, r in enumerate(nets.values()):
        edges = np.array(r["edges"])
        width = np.diff(edges)
        for layer in range(depth):
            ax = axes[row, layer]
            h = np.array(r["hist"][layer], float)
            t = np.array(r["theory_hist"][layer], float)
            ax.bar(edges[:-1], h / max(h.sum(), 1) / width, width=width, align="edge", color="C0")
            ax.step(edges[:-1], t / max(t.sum(), 1) / width, where="post", color="C3", lw=0.9)
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if row == 0:
                ax.set_title(f"layer {layer + 1}", fontsize=8)
        axes[row, 0].set_ylabel(_label(r), fontsize=7)
    fig.suptitle("C15-C17: outputs of each hidden layer (blue: measured, red: mean-field theory)", fontsize=10)
    fig.tight_layout()

    fig2, ax = plots.subplots(figsize=(7, 4.2))
    layers = np.arange(1, depth + 1)
    for k, r in enumerate(nets.values()):
        for draw in r.get("act_std_draws", []):
            ax.semilogy(layers, draw, "-", lw=0.6, alpha=0.35, color=f"C{k}")
        ax.semilogy(layers, r["act_std"], "o-", ms=4, color=f"C{k}", label=_label(r))
        ax.semilogy(layers, r["theory_std"], "--", color=f"C{k}", lw=1)
    ax.set(xlabel="hidden layer", ylabel="std of the layer's output",
           title=f"{depth} x {m['width']}, unit-Gaussian input (median of the draws, thin: each draw; dashed: theory)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig2.tight_layout()
    return {"init_histograms": fig, "init_std": fig2}
