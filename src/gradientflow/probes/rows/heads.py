"""Attention heads: a row per head of each ``nn.MultiheadAttention`` and of each
``F.scaled_dot_product_attention`` call (``attention``: entropy, collapse, logit scale).

Tap: ``LOGITS``, the (batch, heads, queries, keys) masked logits, recomputed beside the module from
its inputs (its forward hook) or beside the call (the probe's ``functional.Calls`` mode hands it
over), with the mode paused so that the recomputation's softmax is not taken for the model's own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...layers import LayerFilter, selects
from .. import attention
from ..builtin import Stat
from ..state import LOGITS, Context, Row, Seen, State, eager, recomputing
from . import Window

HEADS = Stat("attention", (), LOGITS, (State("heads", 0),),
             lambda row, seen: row.accumulate("heads", attention.logit_sums(seen.t)),
             lambda row: {"per_head": attention.rows(row.values["heads"].tolist())})
"""Per head: queries, entropy sum, collapsed count, logit sum, logit sum of squares, logit count."""


class Heads:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, chooses: Callable):
        self.ctx, self.chooses = ctx, chooses
        self.modules = [(Row(name or type(m).__name__, ctx, (HEADS,)), m) for name, m in model.named_modules()
                        if isinstance(m, nn.MultiheadAttention) and selects(chosen, name, m)]
        self.head_dim = {id(row): m.head_dim for row, m in self.modules}
        self.calls: dict[str, Row] = {}  # scaled_dot_product_attention calls, by row name

    def install(self, add: Callable) -> None:
        for row, module in self.modules:
            add(module.register_forward_hook(eager(self._on_module(row)), with_kwargs=True))

    def _on_module(self, row: Row):
        def hook(module, args, kwargs, output):
            if self.ctx.active and not recomputing():
                with self.ctx.paused():
                    self._feed(row, attention.head_logits(module, args, kwargs))
        return hook

    def seen(self, name: str, args: tuple, kwargs: dict) -> None:
        """A ``scaled_dot_product_attention`` call, named after the module that made it."""
        if self._wanted(name):
            with self.ctx.paused():
                logits = attention.sdpa_logits(args, kwargs)
            if logits is not None:
                query = args[0] if args else kwargs["query"]
                self._call(name, logits, query.shape[-1])

    def weighed(self, name: str, logits) -> None:
        """(batch, heads, queries, keys) logits of an attention computed by hand (a softmax over keys)."""
        if self._wanted(name):
            self._call(name, logits, None)

    def _wanted(self, name: str) -> bool:
        """A call's row is kept when ``layers=`` chooses its module, and not for a recomputed forward."""
        return not recomputing() and (name in self.calls or self.chooses(name))

    def _call(self, name: str, logits, head_dim: int | None) -> None:
        if name not in self.calls:
            self.calls[name] = Row(name, self.ctx, (HEADS,))
            self.head_dim[id(self.calls[name])] = head_dim
        self._feed(self.calls[name], logits.detach())

    @torch.no_grad()
    def _feed(self, row: Row, logits) -> None:
        if logits is not None:
            self.ctx.place(row)
            row.feed(LOGITS, Seen(logits))

    def state(self) -> list[Row]:
        return [row for row, _ in self.modules] + list(self.calls.values())

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        out = []
        for row in self.state():
            if row.values["heads"] is None:
                continue
            for h in HEADS.columns(row)["per_head"]:
                out.append((row.order, {"layer": f"{row.name}:head{h.pop('head')}", "type": "attention head",
                                        "activation": None, "units": self.head_dim[id(row)],
                                        "first_step": window.first_step, "last_step": window.last_step,
                                        "sampled_steps": None, **h}))
        return out

    def covers(self) -> dict[int, str | None]:
        return {id(m): None for _, m in self.modules}
