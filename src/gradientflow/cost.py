"""Measured compute cost of activations in ns per element (C6), with torch.utils.benchmark."""

from __future__ import annotations

import torch
from torch.utils import benchmark

from . import activations


def ns_per_element(name: str, numel: int = 1 << 20, *, backward: bool = False, min_run_time: float = 0.2,
                   seed: int = 0) -> float:
    """Median time of f(x) (and, with ``backward``, of f(x) plus its input gradient) per element, in ns.

    ``x`` is float32 from N(0, 1); maxout is timed as max over 2 pieces of ``numel`` inputs each.
    """
    g = torch.Generator().manual_seed(seed)
    pieces = 2 if name == "maxout" else 1
    x = torch.randn(numel, pieces, generator=g) if pieces > 1 else torch.randn(numel, generator=g)
    fn = (lambda t: t.amax(-1)) if name == "maxout" else activations.get(name).fn
    if backward:
        x.requires_grad_(True)
        ones = torch.ones(numel)
        stmt = "torch.autograd.grad(fn(x), x, ones)"
    else:
        stmt = "fn(x)"
    timer = benchmark.Timer(stmt=stmt, globals={"fn": fn, "x": x, "ones": ones if backward else None, "torch": torch})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e9 / numel


def cost_table(names: tuple[str, ...] = activations.NAMES, numel: int = 1 << 20,
               min_run_time: float = 0.2) -> list[dict]:
    """ns per element forward and forward+backward for each activation, and the ratio to ReLU."""
    rows = []
    for name in names:
        rows.append({"name": name,
                     "forward_ns": ns_per_element(name, numel, min_run_time=min_run_time),
                     "forward_backward_ns": ns_per_element(name, numel, backward=True, min_run_time=min_run_time)})
    relu = next((r for r in rows if r["name"] == "relu"), None) or {
        "forward_ns": ns_per_element("relu", numel, min_run_time=min_run_time),
        "forward_backward_ns": ns_per_element("relu", numel, backward=True, min_run_time=min_run_time)}
    for r in rows:
        r["forward_vs_relu"] = r["forward_ns"] / relu["forward_ns"]
        r["forward_backward_vs_relu"] = r["forward_backward_ns"] / relu["forward_backward_ns"]
    return rows
