"""C18: Glorot's two conditions, forward n_in Var(w) = 1 and backward n_out Var(w) = 1, per layer.

A linear net (the regime of Glorot & Bengio's derivation) whose widths grow 32 -> 64 -> ... -> 512,
so n_in != n_out in every layer, is drawn with four variances: 1/n_in (LeCun: forward only),
1/n_out (backward only), 2/(n_in + n_out) (Xavier/Glorot, the compromise) and 2/n_in (He).
One backward pass under the probe measures each layer's ``glorot_forward`` = Var z / Var x and
``glorot_backward`` = Var(dL/dx) / Var(dL/dz); the products over the layers say what reaches
the far end of the net. The control is a net of equal widths (n_in = n_out) under Xavier, where
both conditions can hold at once: so where they do not, the widths are why, not the measurement.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import init, plots
from . import claim
from .claim import Claim, Verdict
from .common import gaussian_batch, probe_once

CLAIMS = (Claim("C18", "Ideally the variance of each layer's output equals that of its input (forward) and the variance "
                       "of the gradient is the same before and after a layer (backward); both together are generally "
                       "impossible, and Var(w) = 2/(n_in + n_out) is the compromise. It is the guiding condition behind "
                       "all later initialisers.", "001, 004"),)
class Size(claim.Size):
    widths: tuple[int, ...]  # the input and every layer's width: n_in != n_out in each layer
    batch: int  # unit-Gaussian inputs the probe sees
    draws: int  # independent weight draws; the rule reads each ratio's median over them (one draw of a
    # 32-wide layer is off by 10% now and then: sampling noise, not the initialiser)


QUICK = Size(widths=(32, 64, 128, 256, 512), batch=2000, draws=5)
FULL = Size(widths=(32, 64, 128, 256, 512, 1024), batch=10000, draws=15)
INITS = {"lecun (1/n_in)": ("xavier", init.Scale(mode="fan_in")),
         "fan_out (1/n_out)": ("xavier", init.Scale(mode="fan_out")),
         "xavier (2/(n_in+n_out))": ("xavier", init.Scale()),
         "he (2/n_in)": ("he", init.Scale())}
MATCH = 0.1  # the probe's measured ratios equal n_in Var w and n_out Var w within 10% (sampling noise)
SQUARE = 5  # the control's layers, each SQUARE_WIDTH -> SQUARE_WIDTH
SQUARE_WIDTH = 128


def _net(widths: list[int], init_name: str, scale: init.Scale, g: torch.Generator) -> nn.Sequential:
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        linear = nn.Linear(n_in, n_out, bias=False)
        init.get(init_name).fill_(linear.weight, scale, g)
        layers += [linear, nn.Identity()]
    return nn.Sequential(*layers)


def _measure(widths: list[int], init_name: str, scale: init.Scale, size: Size, seed: int) -> dict:
    """Both ratios per layer, median over ``size.draws`` weight draws, beside n_in Var w and n_out Var w."""
    draws = {"forward": [], "backward": []}
    for k in range(size.draws):
        g = torch.Generator().manual_seed(seed + k)
        net = _net(widths, init_name, scale, g)
        x, y = gaussian_batch(size.batch, widths[0], widths[-1], g)
        rows = probe_once(net, x, y)  # the first layer has no backward ratio: its input x needs no gradient
        for side in draws:
            draws[side].append([r[f"glorot_{side}"] for r in rows])
    variance = [init.get(init_name).variance(i, o, scale) for i, o in zip(widths[:-1], widths[1:])]
    median = {side: [float(np.median(layer)) for layer in zip(*values)] for side, values in draws.items()}
    return {"forward": median["forward"], "backward": median["backward"], "forward_draws": draws["forward"],
            "backward_draws": draws["backward"],
            "forward_expected": [i * v for i, v in zip(widths[:-1], variance)],
            "backward_expected": [o * v for o, v in zip(widths[1:], variance)]}


def run(size: Size, seed: int, folder) -> dict:
    widths = list(size.widths)
    out = {"widths": widths, "inits": {}}
    for label, (init_name, scale) in INITS.items():
        out["inits"][label] = _measure(widths, init_name, scale, size, seed)
    out["square"] = {"widths": [SQUARE_WIDTH] * (SQUARE + 1),
                     **_measure([SQUARE_WIDTH] * (SQUARE + 1), "xavier", init.Scale(), size, seed)}
    return out


def _pairs(r: dict) -> list[tuple[float, float]]:
    """(measured, expected) for every finite ratio of both conditions (an undefined one is NaN, or None as stored)."""
    return [(v, e) for v, e in zip(r["forward"] + r["backward"], r["forward_expected"] + r["backward_expected"])
            if v is not None and math.isfinite(v)]


def _worst(r: dict) -> float:
    """max over the layers of |log forward| and |log backward|: how far the worst condition is from 1."""
    return max(abs(math.log(v)) for v, _ in _pairs(r))


def _product(values: list[float]) -> float:
    return float(np.prod([v for v in values if v is not None and math.isfinite(v)]))


def verdicts(m: dict) -> dict[str, Verdict]:
    inits = m["inits"]
    match = all(abs(v / e - 1) < MATCH for r in inits.values() for v, e in _pairs(r))
    # both conditions at once: forward/backward = n_in/n_out whatever Var(w) is, so never both 1 when n_in != n_out
    both_off = all(max(abs(math.log(f / b)) for f, b in zip(r["forward"], r["backward"])
                       if b is not None and math.isfinite(b)) > 0.5
                   for r in inits.values())
    square = m["square"]  # the control: equal widths, where both conditions can hold together
    square_both = all(abs(v - 1) < MATCH for v, _ in _pairs(square))
    worst = {k: _worst(r) for k, r in inits.items()}
    best = min(worst, key=worst.get)
    passed = match and both_off and square_both and best.startswith("xavier")
    numbers = {f"worst_abs_log_ratio[{k}]": v for k, v in worst.items()}
    numbers["worst_abs_log_ratio[equal widths, xavier]"] = _worst(square)
    numbers.update({f"end_to_end_forward[{k}]": _product(r["forward"]) for k, r in inits.items()})
    numbers.update({f"end_to_end_backward[{k}]": _product(r["backward"]) for k, r in inits.items()})
    draws = len(next(iter(inits.values())).get("forward_draws", [None]))
    return {"C18": Verdict(
        passed, f"(1) the probe's measured ratios, median over {draws} weight draws, equal n_in Var(w) and "
                f"n_out Var(w) within {MATCH:.0%} in every layer "
                "for every initialiser; (2) in every initialiser some layer has forward / backward off by more than "
                "e^0.5 (= n_in / n_out: no single variance satisfies both), while in the control, a net of "
                f"{SQUARE} layers {SQUARE_WIDTH} -> {SQUARE_WIDTH} under Xavier, both ratios are within {MATCH:.0%} of 1 "
                "in every layer (equal widths allow both); (3) Xavier has the smallest worst-case |log ratio| over "
                "both conditions and all layers.",
        numbers, "glorot",
        "worst |log ratio|: " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items())
        + f"; best: {best}. The equal-width control's worst |log ratio|: {_worst(square):.3f} (both conditions "
        + ("held" if square_both else "did not hold") + " in every layer). End to end, forward x backward variance gains: "
        + ", ".join(f"{k.split(' ')[0]} {_product(r['forward']):.3g} / {_product(r['backward']):.3g}"
                    for k, r in inits.items()) + ".")}


def figures(m: dict) -> dict:
    fig, (a, b) = plots.subplots(1, 2, figsize=(12, 4), sharey=True)
    widths = m["widths"]
    names = [f"{i}->{o}" for i, o in zip(widths[:-1], widths[1:])]
    pos = np.arange(len(names))
    for k, (label, r) in enumerate(m["inits"].items()):
        a.plot(pos, r["forward"], "o-", color=f"C{k}", label=label)
        a.plot(pos, r["forward_expected"], "x", color=f"C{k}", ms=8)
        b.plot(pos, r["backward"], "o-", color=f"C{k}", label=label)
        b.plot(pos, r["backward_expected"], "x", color=f"C{k}", ms=8)
        for ax, side in ((a, "forward_draws"), (b, "backward_draws")):  # each weight draw: the spread of the median
            for draw in r.get(side, []):
                ax.scatter(pos, draw, s=6, color=f"C{k}", alpha=0.35)
    for ax, title in ((a, "forward: Var z / Var x"), (b, "backward: Var dL/dx / Var dL/dz")):
        ax.axhline(1, color="0.4", lw=0.8, ls="--")
        ax.set_xticks(pos, names)
        ax.set(xlabel="layer (n_in -> n_out)", yscale="log", title=f"C18 {title} (x: n Var w; dots: draws)")
    a.set_ylabel("variance ratio (probe)")
    a.legend(fontsize=8)
    fig.tight_layout()
    return {"glorot": fig}
