"""Normalisation layers (batch, instance, layer and group norm; torch's and a model's own RMSNorm
are not yet known): a row each, with the activation columns of its output and its input's mean and
std (``calls.CallRows``; units along the channels, or the last dimension for ``LayerNorm``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ...layers import LayerFilter, selects
from ..state import Context
from . import ActivationRow, Window
from .calls import CallRows

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class Norms:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, stats: tuple, users: tuple):
        self.ctx = ctx
        self.modules = [(name or type(m).__name__, m) for name, m in model.named_modules()
                        if isinstance(m, NORMS) and selects(chosen, name, m)]
        self.calls = CallRows(ctx, stats, users)

    def install(self, add: Callable) -> None:
        for name, module in self.modules:
            add(module.register_forward_hook(self._on_norm(name)))

    def _on_norm(self, name: str):
        def hook(module, inputs, output):
            if self.ctx.active and inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor):
                self.calls.seen(name, type(module).__name__, None, inputs[0], output,
                                unit_dim=-1 if isinstance(module, nn.LayerNorm) else 1, norm=True)
        return hook

    def state(self) -> list[ActivationRow]:
        return self.calls.state()

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        return self.calls.rows(window)

    def covers(self) -> dict[int, str | None]:
        return {id(m): None for _, m in self.modules}
