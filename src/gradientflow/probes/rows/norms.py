"""Normalisation layers: a row each, with the activation columns of its output and its input's mean
and std (``calls.CallRows``; units along the channels, or the last dimension for layer and RMS norms).

Which modules are normalisation layers: ``layers.is_norm`` (torch's by type, a model's own by what it is).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ...layers import NORMS, LayerFilter, is_norm, selects
from ..state import Context, eager, recomputing
from . import ActivationRow, Window
from .calls import CallRows

def _last_dim(module: nn.Module) -> bool:
    """Whether the norm normalises over the last dimension (layer and RMS norms) rather than channels."""
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or not isinstance(module, NORMS)


class Norms:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, stats: tuple, users: tuple):
        self.ctx = ctx
        self.modules = [(name or type(m).__name__, m) for name, m in model.named_modules()
                        if is_norm(m) and selects(chosen, name, m)]
        self.calls = CallRows(ctx, stats, users)

    def install(self, add: Callable) -> None:
        for name, module in self.modules:
            add(module.register_forward_hook(eager(self._on_norm(name))))

    def _on_norm(self, name: str):
        def hook(module, inputs, output):
            if self.ctx.active and inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor) \
                    and not recomputing():
                self.calls.seen(name, type(module).__name__, None, inputs[0], output,
                                unit_dim=-1 if _last_dim(module) else 1, kind="norm")
        return hook

    def state(self) -> list[ActivationRow]:
        return self.calls.state()

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        return self.calls.rows(window)

    def covers(self) -> dict[int, str | None]:
        return {id(m): None for _, m in self.modules}
