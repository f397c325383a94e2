"""C2: gradients vanish through a deep sigmoid net, by about 1/4 per layer.

Three fresh 10-layer nets (sigmoid and tanh with Xavier, ReLU with He) take one backward pass
of unit-Gaussian inputs under the probe. Per hidden layer l it reads ||dL/dh_l|| and ||dL/dW_l||;
beside them stand the seeds' bound (1/4)^(L-l) and the mean-field prediction
sqrt(prod_{k>l} chi_k) from ``theory.predict_layers`` (Schoenholz et al. 2017), with
sigma_w^2 = fan_in Var(w) of the initialiser. The seeds' "at most 1/4 per layer" bounds sigmoid's
derivative alone; the gradient's norm factor per layer is sigma_w sqrt(E[s'(z)^2]), so a scan of
sigmoid nets over sigma_w^2 (``SCAN``) shows where the 1/4 stops holding, measured and predicted.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import init, model, plots, theory
from . import claim
from .claim import Claim, Verdict
from .common import gaussian_batch, hidden, probe_once

CLAIMS = (Claim("C2", "Back-propagation multiplies local derivatives layer by layer; with sigmoid each layer scales "
                      "the gradient by at most 1/4, so after 10 layers by at most (1/4)^10 ~ 9.5e-7. Early layers "
                      "stop learning.", "000, 001, 004"),)
class Size(claim.Size):
    depth: int  # hidden layers
    width: int  # units per layer
    batch: int  # unit-Gaussian inputs of one backward pass


QUICK = Size(depth=10, width=200, batch=512)
FULL = Size(depth=10, width=500, batch=2000)
NETS = (("sigmoid", "xavier"), ("tanh", "xavier"), ("relu", "he"))
SCAN = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # sigmoid nets' sigma_w^2 = fan_in Var(w), biases 0

FINITE_WIDTH = 1.15  # measured per-layer factor may exceed 1/4 by this much: a finite net's sampling noise
STOPPED = 1e-2  # "stops learning": the first layer's weight gradient under 1% of the last hidden layer's
THEORY_FACTOR = 3.0  # theory and measurement agree when the end-to-end ratio is within this factor


def run(size: Size, seed: int, folder) -> dict:
    depth, width = size.depth, size.width
    out = {}
    for act, init_name in NETS:
        g = torch.Generator().manual_seed(seed)
        net = model.mlp(width, width, depth, 10, activation=act, init_name=init_name, generator=g)
        x, y = gaussian_batch(size.batch, width, 10, g)
        rows = hidden(probe_once(net, x, y))
        sw2, _ = init.meanfield_scales(init_name, width)
        pred = theory.predict_layers(act, depth, sw2, 0.0, input_var=1.0)
        out[act] = {"init": init_name, "sigma_w2": sw2,
                    "act_grad_norm": [r["act_grad_norm"] for r in rows],
                    "weight_grad_norm": [r["weight_grad_norm"] for r in rows],
                    "theory_factor": [p.grad_norm_factor for p in pred]}
    out["depth"] = depth
    scan = []
    for w2 in SCAN:
        g = torch.Generator().manual_seed(seed)
        net = model.mlp(width, width, depth, 10, activation="sigmoid", init_name="xavier",
                        scale=init.meanfield(w2), generator=g)
        x, y = gaussian_batch(size.batch, width, 10, g)
        grads = [r["act_grad_norm"] for r in hidden(probe_once(net, x, y))]
        pred = theory.predict_layers("sigmoid", depth, w2, 0.0, input_var=1.0)
        scan.append({"sigma_w2": w2, "per_layer": (grads[0] / grads[-1]) ** (1 / (depth - 1)),
                     "theory_per_layer": pred[0].grad_norm_factor ** (1 / (depth - 1))})
    out["sigmoid_scan"] = scan
    return out


def quarter_holds_up_to(scan: list[dict], key: str = "per_layer") -> float | None:
    """The largest sigma_w^2 of the scan up to which every per-layer factor (``key``: measured or
    ``theory_per_layer``) is at most 1/4 (x ``FINITE_WIDTH`` for the measured one); None if not even the first."""
    allowance = FINITE_WIDTH if key == "per_layer" else 1.0
    held = None
    for row in scan:
        if row[key] > 0.25 * allowance:
            break
        held = row["sigma_w2"]
    return held


def _ratios(m: dict, act: str) -> tuple[float, float, float, float]:
    """(measured ||dL/dh_1|| / ||dL/dh_L||, theory's, geometric mean per-layer factor, weight-grad ratio)."""
    g = m[act]["act_grad_norm"]
    end = g[0] / g[-1]
    per_layer = end ** (1 / (len(g) - 1))
    w = m[act]["weight_grad_norm"]
    return end, m[act]["theory_factor"][0], per_layer, w[0] / w[-1]


def verdicts(m: dict) -> dict[str, Verdict]:
    """Pass when sigmoid's per-layer factor is at most 1/4 (finite-width allowance), its first layer's weight
    gradient is under 1% of the last's, and theory predicts every net's end-to-end ratio within 3x."""
    numbers, agree = {}, True
    for act, _ in NETS:
        end, pred, per_layer, wratio = _ratios(m, act)
        numbers[f"{act}_grad_ratio_h1_over_hL"] = end
        numbers[f"{act}_theory_ratio"] = pred
        numbers[f"{act}_per_layer_factor"] = per_layer
        agree &= 1 / THEORY_FACTOR <= end / pred <= THEORY_FACTOR
    bound = 0.25 ** (m["depth"] - 1)
    numbers["bound_quarter_pow_L_minus_1"] = bound
    end, _, per_layer, wratio = _ratios(m, "sigmoid")
    numbers["sigmoid_weight_grad_ratio_W1_over_WL"] = wratio
    passed = per_layer <= 0.25 * FINITE_WIDTH and wratio < STOPPED and agree
    scan = m.get("sigmoid_scan", [])
    held, held_theory = quarter_holds_up_to(scan), quarter_holds_up_to(scan, "theory_per_layer")
    numbers["quarter_holds_up_to_sigma_w2"] = held
    numbers["quarter_holds_up_to_sigma_w2_theory"] = held_theory
    numbers["sigmoid_scan_per_layer"] = {f"{r['sigma_w2']:g}": r["per_layer"] for r in scan}
    return {"C2": Verdict(
        passed,
        f"sigmoid (Xavier, sigma_w^2 = 1): the geometric-mean per-layer factor of ||dL/dh|| is at most 1/4 "
        f"(x{FINITE_WIDTH:g}, the sampling noise of a finite-width net); the first layer's ||dL/dW|| is under "
        f"{STOPPED:g} of the last hidden layer's ('stops learning': a 100x smaller step); and the mean-field "
        f"prediction sqrt(prod chi_1) matches the measured end-to-end ratio within {THEORY_FACTOR:g}x for sigmoid, "
        "tanh and ReLU. The 1/4 is a bound on s' alone; the norm factor is sigma_w sqrt(E[s'^2]), <= 1/4 only "
        "while sigma_w <= 1.",
        numbers, "vanishing_gradients",
        f"sigmoid: ||dL/dh_1|| / ||dL/dh_{m['depth']}|| = {end:.3g} (bound (1/4)^{m['depth'] - 1} = {bound:.3g}, theory "
        f"{numbers['sigmoid_theory_ratio']:.3g}), {per_layer:.3g} per layer; tanh {numbers['tanh_per_layer_factor']:.3g} "
        f"and ReLU/He {numbers['relu_per_layer_factor']:.3g} per layer. " + _scan_sentence(scan, held, held_theory))}


def _scan_sentence(scan: list[dict], held, held_theory) -> str:
    """Where the seeds' 1/4 per layer stops holding for sigmoid, in words computed from the scan."""
    if not scan:
        return ""
    first_above = next((r for r in scan if r["per_layer"] > 0.25 * FINITE_WIDTH), None)
    where = ("it held over the whole scan" if first_above is None else
             f"it held up to sigma_w^2 = {held:g}" if held is not None else "it did not hold even at the scan's start")
    after = "" if first_above is None else (
        f"; at sigma_w^2 = {first_above['sigma_w2']:g} the factor is {first_above['per_layer']:.3g} per layer "
        f"(theory {first_above['theory_per_layer']:.3g})")
    return (f"The 1/4 per layer is a bound on s' alone: over sigmoid nets with sigma_w^2 from {scan[0]['sigma_w2']:g} "
            f"to {scan[-1]['sigma_w2']:g}, {where}{after}; mean-field theory puts the limit at sigma_w^2 = "
            f"{'below the scan' if held_theory is None else format(held_theory, 'g')}.")


def figures(m: dict) -> dict:
    """||dL/dh_l|| relative to the last hidden layer, per net, with (1/4)^(L-l) and the theory."""
    depth = m["depth"]
    layers = np.arange(1, depth + 1)
    fig, (left, right, third) = plots.subplots(1, 3, figsize=(16, 4))
    for k, (act, init_name) in enumerate(NETS):
        g = np.array(m[act]["act_grad_norm"])
        left.semilogy(layers, g / g[-1], "o-", color=f"C{k}", label=f"{act} / {init_name}: measured")
        left.semilogy(layers, m[act]["theory_factor"], "--", color=f"C{k}", label=f"{act}: theory sqrt(prod chi_1)")
        w = np.array(m[act]["weight_grad_norm"])
        right.semilogy(layers, w / w[-1], "o-", color=f"C{k}", label=f"{act} / {init_name}")
    left.semilogy(layers, 0.25 ** (depth - layers), ":", color="k", lw=2, label="(1/4)^(L-l), the seeds' bound")
    left.set(xlabel="hidden layer l", ylabel="||dL/dh_l|| / ||dL/dh_L||", title="C2: gradient w.r.t. layer outputs")
    right.set(xlabel="hidden layer l", ylabel="||dL/dW_l|| / ||dL/dW_L||", title="weight gradients (what learns)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    scan = m.get("sigmoid_scan", [])
    if scan:
        w2 = [r["sigma_w2"] for r in scan]
        third.loglog(w2, [r["per_layer"] for r in scan], "o-", color="C0", label="sigmoid: measured")
        third.loglog(w2, [r["theory_per_layer"] for r in scan], "--", color="C0", label="theory sigma_w sqrt(E s'^2)")
        third.axhline(0.25, color="k", ls=":", lw=2, label="1/4, the seeds' bound")
        third.set(xlabel="sigma_w^2 = fan_in Var(w)", ylabel="per-layer factor of ||dL/dh||",
                  title="where 1/4 per layer stops holding")
        third.legend(fontsize=7)
    for ax in (left, right, third):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return {"vanishing_gradients": fig}
