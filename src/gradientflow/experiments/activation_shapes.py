"""C1, C5, C6: sigmoid and tanh, their derivatives and saturation, and what they cost against ReLU.

The shapes are measured on float64 grids with autograd (not with the closed forms the claims
state, which are what is being checked); the saturated region is the project's definition,
|f'| < 5% of its peak (``properties.saturated_region``); the cost is timed with
``torch.utils.benchmark`` (``properties.cost_table``).

C6 is about the function's own cost (exp against a comparison), so it is timed on a tensor that
fits in the cache (2^18 floats, 1 MB) at both sizes; the full size only times longer. On a tensor of
2^22 floats (16 MB), every elementwise activation waits on memory rather than on exp, and the ratio
shrinks towards 1 (BENCHMARKS.md, the full run of issue 31).
"""

from __future__ import annotations

import os

import torch

from .. import plots, properties
from . import claim
from .claim import Claim, Verdict

CLAIMS = (
    Claim("C1", "Sigmoid: s(x) = 1/(1+e^-x), s' = s(1-s), largest derivative 0.25 at 0; for |x| beyond about 10 "
                "the local gradient is practically 0 (saturation).", "000, 001, 002, 003, 004"),
    Claim("C5", "tanh(x) = 2s(2x) - 1, zero-centred output, derivative 1 - tanh^2 in (0, 1]; it still saturates.",
          "001, 002, 004"),
    Claim("C6", "exp makes sigmoid and tanh more expensive than ReLU.", "000"),
)
class Size(claim.Size):
    numel: int  # elements per timed call (C6)
    min_run_time: float  # seconds torch.utils.benchmark spends per measurement


QUICK = Size(numel=1 << 18, min_run_time=0.1)
FULL = Size(numel=1 << 18, min_run_time=0.5)  # the same tensor, timed longer

FAR = 10.0  # C1's "beyond about 10"
PRACTICALLY_ZERO = 1e-3  # of the peak derivative: a gradient scaled by less than a thousandth
COSTLIER = 1.2  # cost ratio to ReLU: timings on a shared CPU vary by a few percent; 20% is well outside that


def _autograd_derivative(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(fn(x).sum(), x)
    return d


def run(size: Size, seed: int, folder) -> dict:
    """Shapes by autograd on a float64 grid; costs by timing (ns per element)."""
    x = torch.linspace(-20, 20, 40_001, dtype=torch.float64)
    s = torch.sigmoid(x)
    ds = _autograd_derivative(torch.sigmoid, x)
    dt = _autograd_derivative(torch.tanh, x)
    inside = x.abs() <= FAR
    sig, tanh = properties.measure("sigmoid"), properties.measure("tanh")
    far = torch.tensor([-FAR, FAR], dtype=torch.float64)
    tables = _costs(size)
    return {
        "sigmoid_derivative_vs_closed_form": float((ds - s * (1 - s)).abs().max()),
        "sigmoid_peak": float(ds.max()), "sigmoid_peak_at": float(x[ds.argmax()]),
        "sigmoid_derivative_at_10": float(_autograd_derivative(torch.sigmoid, far).max()),
        "sigmoid_saturated_beyond": sig.saturated_region[-1][0],
        "tanh_vs_2sigmoid_2x_minus_1": float((torch.tanh(x) - (2 * torch.sigmoid(2 * x) - 1)).abs().max()),
        "tanh_derivative_vs_closed_form": float((dt - (1 - torch.tanh(x) ** 2)).abs().max()),
        "tanh_derivative_max": float(dt.max()), "tanh_derivative_min_within_10": float(dt[inside].min()),
        "tanh_mean_at_unit_gaussian": tanh.mean_at_unit_gaussian,
        "sigmoid_mean_at_unit_gaussian": sig.mean_at_unit_gaussian,
        "tanh_saturated_beyond": tanh.saturated_region[-1][0],
        "tanh_derivative_at_10": float(_autograd_derivative(torch.tanh, far).max()),
        "cost": tables["1 thread"], "cost_by_threads": tables,
    }


def _costs(size: Size) -> dict[str, list[dict]]:
    """The C6 cost table at one thread and at every core's thread (torch's intra-op threads), ReLU beside them."""
    names, before = ("relu", "leaky_relu", "sigmoid", "tanh", "elu"), torch.get_num_threads()
    tables = {}
    try:
        for n in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(n)
            tables[f"{n} thread{'s' if n > 1 else ''}"] = properties.cost_table(names, numel=size.numel,
                                                                                 min_run_time=size.min_run_time)
    finally:
        torch.set_num_threads(before)
    return tables


def verdicts(m: dict) -> dict[str, Verdict]:
    """C1: peak 0.25 at 0 and s' = s(1-s); C5: the identity, (0, 1], zero mean, a saturated region; C6: cost ratios."""
    c1_numbers = {k: m[k] for k in ("sigmoid_peak", "sigmoid_peak_at", "sigmoid_derivative_vs_closed_form",
                                    "sigmoid_derivative_at_10", "sigmoid_saturated_beyond")}
    c1 = (abs(m["sigmoid_peak"] - 0.25) < 1e-9 and abs(m["sigmoid_peak_at"]) < 1e-9
          and m["sigmoid_derivative_vs_closed_form"] < 1e-12
          and m["sigmoid_derivative_at_10"] < PRACTICALLY_ZERO * m["sigmoid_peak"])
    c5_numbers = {k: m[k] for k in ("tanh_vs_2sigmoid_2x_minus_1", "tanh_derivative_vs_closed_form",
                                    "tanh_derivative_max", "tanh_derivative_min_within_10",
                                    "tanh_mean_at_unit_gaussian", "sigmoid_mean_at_unit_gaussian",
                                    "tanh_saturated_beyond", "tanh_derivative_at_10")}
    c5 = (m["tanh_vs_2sigmoid_2x_minus_1"] < 1e-12 and m["tanh_derivative_vs_closed_form"] < 1e-12
          and abs(m["tanh_derivative_max"] - 1) < 1e-12 and m["tanh_derivative_min_within_10"] > 0
          and abs(m["tanh_mean_at_unit_gaussian"]) < 1e-9
          and m["tanh_derivative_at_10"] < PRACTICALLY_ZERO * m["tanh_derivative_max"])
    ratios = {f"{act} vs relu, {kind.replace('_', '+')}, {threads}": r[f"{kind}_vs_relu"]
              for threads, table in m["cost_by_threads"].items() for r in table if r["name"] in ("sigmoid", "tanh")
              for act in (r["name"],) for kind in ("forward", "forward_backward")}
    ns = {r["name"]: r["forward_ns"] for r in m["cost"]}
    forward = {k: v for k, v in ratios.items() if "forward+backward" not in k}
    cheapest = min(forward, key=forward.get)
    c6 = forward[cheapest] >= COSTLIER
    training = {k: v for k, v in ratios.items() if "forward+backward" in k}
    return {
        "C1": Verdict(c1, f"autograd's s' equals s(1-s) to 1e-12 on [-20, 20]; its peak is 0.25 (to 1e-9) at x = 0; "
                          f"at |x| = {FAR:g} it is below {PRACTICALLY_ZERO:g} of the peak (a gradient scaled by less "
                          "than a thousandth is 'practically 0').", c1_numbers, "activations",
                      f"peak s' = {m['sigmoid_peak']:.6g} at x = {m['sigmoid_peak_at']:.3g}; s'(10) = "
                      f"{m['sigmoid_derivative_at_10']:.3g}; |s'| < 5% of the peak beyond |x| = "
                      f"{m['sigmoid_saturated_beyond']:.3g}."),
        "C5": Verdict(c5, "tanh(x) = 2s(2x) - 1 to 1e-12; autograd's derivative equals 1 - tanh^2 to 1e-12, its "
                          "maximum is 1 and it stays > 0 on [-10, 10]; E[tanh(z)] = 0 for z ~ N(0, 1); at |x| = 10 "
                          f"the derivative is below {PRACTICALLY_ZERO:g} of its peak (saturation).",
                      c5_numbers, "activations",
                      f"mean output at N(0,1): tanh {m['tanh_mean_at_unit_gaussian']:.2g} against sigmoid "
                      f"{m['sigmoid_mean_at_unit_gaussian']:.2g}; tanh saturates beyond |x| = "
                      f"{m['tanh_saturated_beyond']:.3g} (sooner than sigmoid, at {m['sigmoid_saturated_beyond']:.3g})."),
        "C6": Verdict(c6, f"the function's own cost: sigmoid's and tanh's forward time per element each at least "
                          f"{COSTLIER:g}x ReLU's, at one thread and at every core's thread (timings vary by a few "
                          "percent run to run; 20% is well outside that). Forward+backward, what a training step pays, "
                          "is measured and reported beside it. Times are measured on this machine: the verdict says "
                          "whether the seeds' ordering holds here.",
                      {"relu_ns": ns["relu"], "sigmoid_ns": ns["sigmoid"], "tanh_ns": ns["tanh"], **ratios},
                      "activation_cost",
                      "forward: " + ", ".join(f"{k.replace(', forward', '')} {v:.2g}x" for k, v in forward.items())
                      + f" (the smallest, {cheapest}, decides); forward+backward: "
                      + ", ".join(f"{k.replace(', forward+backward', '')} {v:.2g}x" for k, v in training.items())
                      + " (the backward pass narrows the gap)."),
    }


def figures(m: dict) -> dict:
    """The gallery of f and f' (the seeds' missing activation figures) and the cost bars."""
    fig, ax = plots.subplots(figsize=(7, 3))
    names = [r["name"] for r in m["cost"]]
    fwd = [r["forward_ns"] for r in m["cost"]]
    both = [r["forward_backward_ns"] for r in m["cost"]]
    pos = range(len(names))
    ax.bar([p - 0.2 for p in pos], fwd, width=0.4, label="forward")
    ax.bar([p + 0.2 for p in pos], both, width=0.4, label="forward + backward")
    ax.set_xticks(list(pos), names)
    ax.set_ylabel("ns per element (one thread)")
    ax.set_title("C6: cost of the activation function (measured)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return {"activations": plots.activation_gallery(("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout")),
            "activation_cost": fig}
