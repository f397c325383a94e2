"""What every row with a weight shares: its gradient dL/dW (the ``WEIGHT_GRAD`` tap) and its change
over one optimiser step (the ``UPDATE`` tap), for layers (``layers``) and embedding tables
(``tables``) alike.

The gradient is handed over by the weight's post-accumulate hook on each backward pass, or, once
the probe knows a step spans several backward passes (gradient accumulation, DistributedDataParallel),
once per optimiser step from ``.grad`` (``grads``), as the optimiser will see it. The update is
measured at the start of the step after one whose weights were copied (the schedule's ``snapshot``).
A frozen weight (``requires_grad`` off) has neither.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..schedule import Plan
from ..state import UPDATE, WEIGHT_GRAD, Context, Row, Seen


class Weights:
    def __init__(self, ctx: Context, grads_at_step: bool):
        self.ctx, self.grads_at_step = ctx, grads_at_step
        self.held: list[tuple[Row, Tensor, Callable[[Tensor], Tensor]]] = []
        self.copies: dict[int, Tensor] = {}  # index into held -> the weight before the step

    def hold(self, row: Row, weight: Tensor, view: Callable[[Tensor], Tensor] = lambda t: t) -> None:
        """Measure ``weight``'s gradient and update into ``row``; ``view`` turns its gradient into the
        shape the statistics expect (one row per unit; the update is measured on the weight as it is)."""
        self.held.append((row, weight, view))

    def install(self, add: Callable) -> None:
        if self.grads_at_step:
            return
        for row, weight, view in self.held:
            if weight.requires_grad and row.reads(WEIGHT_GRAD):
                add(weight.register_post_accumulate_grad_hook(self._on_grad(row, view)))

    def _on_grad(self, row: Row, view: Callable):
        def hook(weight: Tensor):
            if self.ctx.active and weight.grad is not None and not self.grads_at_step:
                with torch.no_grad():
                    row.feed(WEIGHT_GRAD, Seen(view(weight.grad)))
        return hook

    @torch.no_grad()
    def grads(self) -> None:
        """Each weight's gradient as the optimiser will see it (accumulated, all-reduced)."""
        for row, weight, view in self.held:
            if weight.grad is not None and weight.requires_grad:
                row.feed(WEIGHT_GRAD, Seen(view(weight.grad)))

    @torch.no_grad()
    def step(self, plan: Plan, measure_update: bool) -> None:
        """A step starts: measure the update since the copy, copy the weights if the plan says so."""
        if measure_update:
            for i, (row, weight, _) in enumerate(self.held):
                if i in self.copies:
                    row.feed(UPDATE, Seen(weight.detach(), z=self.copies[i]))
        if plan.snapshot:
            for i, (row, weight, _) in enumerate(self.held):
                if row.reads(UPDATE) and weight.requires_grad:
                    if i not in self.copies or self.copies[i].shape != weight.shape:
                        self.copies[i] = torch.empty_like(weight)
                    self.copies[i].copy_(weight.detach())
