"""What counts as one training step of a watched model, without being told (``steps="forward"``).

A step is one forward pass of the model in training mode with gradients on, until a torch optimiser
over the model's weights is seen to step after more than one forward (gradient accumulation): from
then on a step is every forward between two optimiser steps, and the weight gradient is read once,
accumulated, just before the update. torch.optim's global step hooks tell the optimiser steps apart
from the forwards; a forward that starts before the optimiser has stepped since the current step
began is another micro-batch of that step.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .state import eager


class Steps:
    """The optimiser steps and forwards seen. ``on_accumulate`` is called once, when micro-batches
    are first seen; ``before_update`` before each optimiser step over the model's weights."""

    def __init__(self, model: nn.Module, on_accumulate: Callable[[], None], before_update: Callable[[], None]):
        self.weights = {id(p) for p in model.parameters()}
        self.on_accumulate, self.before_update = on_accumulate, before_update
        self.optimiser_steps = 0  # optimiser steps over the model's weights seen
        self.at_step_start = 0  # ... when the current step began
        self.accumulating = False  # several forwards per optimiser step seen: a step is an optimiser step
        self.forwards = 0  # training forwards since the last optimiser step

    def watch(self, add: Callable) -> None:
        """Install torch.optim's global step hooks, handing each removable handle to ``add``."""
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        add(register_optimizer_step_pre_hook(eager(self._before)))
        add(register_optimizer_step_post_hook(eager(self._after)))

    def starts_step(self, first: bool) -> bool:
        """A training forward begins: whether it starts a new step (else it is another micro-batch of
        the current one, and accumulation is noted). ``first``: no step has begun yet."""
        self.forwards += 1
        if not first and self.optimiser_steps and self.optimiser_steps == self.at_step_start:
            self._accumulate()
            return False
        self.at_step_start = self.optimiser_steps
        return True

    def _ours(self, optimizer) -> bool:
        return any(id(p) in self.weights for group in optimizer.param_groups for p in group["params"])

    def _before(self, optimizer, args, kwargs) -> None:
        if self._ours(optimizer):
            self.before_update()

    def _after(self, optimizer, args, kwargs) -> None:
        if self._ours(optimizer):
            self.optimiser_steps += 1
            if self.forwards > 1:  # micro-batches: read the sum from now on
                self._accumulate()
            self.forwards = 0

    def _accumulate(self) -> None:
        if not self.accumulating:
            self.accumulating = True
            self.on_accumulate()
