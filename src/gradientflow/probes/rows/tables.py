"""Embedding tables (``nn.Embedding``, ``nn.EmbeddingBag``): a row each with the two statistics a
lookup table has, its gradient norm (``weight_grad_norm``) and its update ratio (``update_ratio``),
measured on the rows the step changed. A table has no nonlinearity and its input is indices, so the
activation and input columns are NaN. A frozen table has nothing to measure and is listed in
``skipped``.

Taps: the forward hook counts the call (``CALL``) and places the row in forward order;
``weights.Weights`` hands it dL/dW and its update (a sparse gradient as its values).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ...layers import LayerFilter, selects
from .. import builtin
from ..state import CALL, Context, Row, eager, recomputing
from . import Window
from .weights import Weights

TABLES = (nn.Embedding, nn.EmbeddingBag)


def _dense(grad: Tensor) -> Tensor:
    return grad.coalesce().values() if grad.is_sparse else grad


class Tables:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, weights: Weights, groups: frozenset):
        self.ctx = ctx
        modules = [(name or type(m).__name__, m) for name, m in model.named_modules()
                   if isinstance(m, TABLES) and selects(chosen, name, m)]
        self.frozen = [m for _, m in modules if not m.weight.requires_grad]
        stats = builtin.chosen(builtin.TABLE, groups, ())
        self.found = [(Row(name, ctx, stats), m) for name, m in modules if m.weight.requires_grad]
        for row, module in self.found:
            weights.hold(row, module.weight, _dense)

    def install(self, add: Callable) -> None:
        for row, module in self.found:
            add(module.register_forward_hook(eager(self._on_lookup(row))))

    def _on_lookup(self, row: Row):
        def hook(module, inputs, output):
            if self.ctx.active and not recomputing():
                self.ctx.place(row)
                row.feed(CALL, None)
        return hook

    def state(self) -> list[Row]:
        return [row for row, _ in self.found]

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        out = []
        for row, module in self.found:
            if not row.values["n"][0]:
                continue
            header = {"layer": row.name, "type": type(module).__name__, "activation": None,
                      "units": module.embedding_dim, "first_step": window.first_step, "last_step": window.last_step,
                      "sampled_steps": int(window.steps(row))}
            columns = builtin.columns(row, header, ())
            del columns["grad_factor"]  # no dL/dh: a table stays out of the layer-to-layer gradient chain
            out.append((row.order, columns))
        return out

    def covers(self) -> dict[int, str | None]:
        covered: dict[int, str | None] = {id(m): None for _, m in self.found}
        covered.update({id(m): f"{type(m).__name__}: frozen, no gradient or update to measure" for m in self.frozen})
        return covered
