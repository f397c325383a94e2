"""Rows without weights of their own, h = f(z): nonlinearities called as functions inside a module's
``forward`` (``functional.Calls`` hands each call over; type "function"), and, through ``norms``,
normalisation layers (their class name; z their input, h their output). Such a row has the
activation columns (moments, histogram, saturated, zero, dead, dL/dh) and its input's mean and std
(``in_mean``, ``in_std``): what normalisation hides. A row is made the first time its call is seen.

Taps: the call hands the row z (``INPUT`` and ``PRE``; None for an in-place call, whose input is
gone) and h with z (``ACT``); a tensor hook hands it dL/dh (``ACT_GRAD``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...activations import Activation
from ...layers import LayerFilter, selects
from .. import builtin
from ..state import ACT, ACT_GRAD, CALL, INPUT, PRE, Context, Seen, recomputing
from . import ActivationRow, Window, on_grad


class CallRows:
    """The rows of calls seen so far, by name, and what each call adds to its row."""

    def __init__(self, ctx: Context, stats: tuple, users: tuple):
        self.ctx, self.stats, self.users = ctx, stats, users
        self.by_name: dict[str, ActivationRow] = {}
        self.kinds: dict[str, tuple[str, str | None]] = {}  # row name -> (type, activation) columns

    def row(self, name: str, function: str, record: Activation | None, h: Tensor, unit_dim: int | None,
            kind: str) -> ActivationRow:
        if unit_dim is None:
            unit_dim = 1 if h.dim() == 4 else -1  # (N, C, H, W): channels; else the last dimension
        if h.dim() < 2:
            unit_dim = 0
        with self.ctx.paused():  # the regions are found with torch calls of the probe's own
            lo_hi = record.output_range() if record is not None else ((0.0, 1.0) if function == "softmax" else (None, None))
            row = ActivationRow(name, self.ctx, self.stats, unit_dim=unit_dim, nonlinear=record is not None,
                                saturated_region=record.saturated_region() if record is not None else (),
                                dead_region=record.dead_region() if record is not None else (), hist_range=lo_hi)
        row.units = h.shape[unit_dim] if h.dim() else 1
        self.ctx.place(row)
        self.by_name[name] = row
        activation = record.name if record is not None else function
        self.kinds[name] = {"norm": (function, None), "activation": (function, activation)}.get(kind, ("function", activation))
        return row

    def seen(self, name: str, function: str, record: Activation | None, z: Tensor | None, h: Tensor,
             unit_dim: int | None = None, kind: str = "function") -> None:
        """A call of ``function`` (a torch function's name, or a module's class name): its row is of
        type "function", or for ``kind`` "norm" and "activation" (a module's call) of its class name."""
        row = self.by_name.get(name) or self.row(name, function, record, h, unit_dim, kind)
        with torch.no_grad():
            row.feed(CALL, None)
            if z is not None:
                before = Seen(z)
                row.feed(INPUT, before)
                row.feed(PRE, before)
            regions = h if z is None and function == "relu" else z  # in place: relu reads the same on h
            row.feed(ACT, Seen(h, z=regions if h.dim() else None))
        if h.requires_grad and row.reads(ACT_GRAD):
            h.register_hook(on_grad(row, (ACT_GRAD,)))

    def state(self) -> list[ActivationRow]:
        return list(self.by_name.values())

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        out = []
        for name, row in self.by_name.items():
            if not row.values["n"][0]:
                continue
            row.steps = window.steps(row)
            kind, activation = self.kinds[name]
            header = {"layer": name, "type": kind, "activation": activation, "units": row.units,
                      "first_step": window.first_step, "last_step": window.last_step, "sampled_steps": int(row.steps)}
            out.append((row.order, builtin.columns(row, header, self.users)))
        return out


class FunctionCalls:
    """The kind: calls the probe's ``functional.Calls`` mode hands over, kept when ``layers=`` chooses
    the module a call is named after ("block.fc:relu" -> "block.fc")."""

    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, stats: tuple, users: tuple):
        self.model, self.chosen = model, chosen
        self.calls = CallRows(ctx, stats, users)
        self.named = dict(model.named_modules())

    def install(self, add: Callable) -> None:
        """Nothing: the probe's mode hands the calls over (``seen``)."""

    def seen(self, name: str, function: str, record: Activation | None, z: Tensor | None, h: Tensor) -> None:
        if recomputing():
            return
        if name in self.calls.by_name or self.chooses(name):
            self.calls.seen(name, function, record, z, h)

    def chooses(self, row: str) -> bool:
        if self.chosen is None:
            return True
        where = row.split(":")[0]
        module = self.named.get(where, self.model if where == "model" else None)
        return module is not None and selects(self.chosen, where if module is not self.model else "", module)

    def state(self) -> list[ActivationRow]:
        return self.calls.state()

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        return self.calls.rows(window)

    def covers(self) -> dict[int, str | None]:
        return {}
