"""L1 and L2 penalties on a net's weights, applied as their gradients after each backward pass.

The penalty is l1 sum|w| + (l2 / 2) sum w^2 over the weight matrices (not the biases, nor a norm
layer's scale: the parameters of one dimension), whose gradient l1 sign(w) + l2 w (the subgradient
0 at w = 0) is added to each weight's gradient once the loss's own is there (CS231n's notes on
regularisation; Playground's L1 and L2). The logged loss stays the data's, as the Playground shows it.
"""

from __future__ import annotations

import torch

from .records import Observer


class Penalty(Observer):
    """Adds l1 sign(w) + l2 w to the gradient of every weight of ``model`` (parameters of two or more
    dimensions) at each step: an observer of ``Trainer``, called after clipping and before the optimiser."""

    def __init__(self, model: torch.nn.Module, l1: float = 0.0, l2: float = 0.0):
        if not (l1 >= 0 and l2 >= 0):
            raise ValueError(f"l1={l1!r} and l2={l2!r} must be numbers >= 0")
        self.weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
        self.l1, self.l2 = float(l1), float(l2)

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        pairs = [(w, w.grad) for w in self.weights if w.grad is not None]
        if not pairs:
            return
        weights, grads = [w for w, _ in pairs], [g for _, g in pairs]
        if self.l2:
            torch._foreach_add_(grads, weights, alpha=self.l2)
        if self.l1:
            torch._foreach_add_(grads, torch._foreach_sign(weights), alpha=self.l1)
