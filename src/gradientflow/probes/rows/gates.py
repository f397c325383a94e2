"""Recurrent rows: per (layer, direction) of an ``nn.LSTM``/``GRU``/``RNN``, a row for the hidden
state and a row per gate; a cell (``nn.LSTMCell``/``GRUCell``/``RNNCell``) stepped by the model's own
loop has one such group (``recurrent`` says how they are recomputed beside the module).

Taps: ``GATES``, per row the gates' pre-activations (T, N, gates*H); ``STATES``, per row its hidden
states; ``TIME_GRAD``, the (rows, T) norms of dL_T/dh_t of one backward pass (layers only).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...activations import CATALOG
from ...layers import LayerFilter, selects
from .. import recurrent, stats
from ..builtin import Stat
from ..state import GATES, STATES, TIME_GRAD, Context, Row, Seen, State, eager, recomputing
from . import Window


def _add_gates(row: Row, seen: Seen) -> None:
    """Per row and gate: [sum, sum of squares, count] of the gate's values and its saturated count."""
    module = row.module
    gates, H = recurrent.GATES[recurrent.mode_of(module)], module.hidden_size
    sums = []
    for pre in seen.t:
        for g, (_, fn) in enumerate(gates):
            z = pre[..., g * H:(g + 1) * H]
            saturated = stats.count_in_region(z, CATALOG[fn].saturated_region())
            sums.append(torch.cat([stats.moments(CATALOG[fn](z)), saturated.double().reshape(1)]))
    row.accumulate("gates", torch.stack(sums).reshape(len(seen.t), len(gates), 4))
    row.add("steps", 1)


def _add_states(row: Row, seen: Seen) -> None:
    row.accumulate("states", torch.stack([stats.moments(torch.stack(seq).detach()) for seq in seen.t]))


def _add_time(row: Row, seen: Seen) -> None:
    """Squared norms per row and time step, and per time step the backward passes that added to them
    (a longer sequence than any before widens the sums)."""
    squares = seen.t.detach() ** 2
    T = squares.shape[1]
    have, n = row.tensors["time_sq"], row.tensors["time_n"]
    if have is None:
        row.tensors["time_sq"], row.tensors["time_n"] = squares, squares.new_ones(T)
        return
    if have.shape[1] < T:
        have, n = F.pad(have, (0, T - have.shape[1])), F.pad(n, (0, T - have.shape[1]))
    have[:, :T] += squares
    n[:T] += 1
    row.tensors["time_sq"], row.tensors["time_n"] = have, n


GATE_VALUES = Stat("gates", (), GATES, (State("gates", 0), State("steps", 1, (1,))), _add_gates)
HIDDEN_STATES = Stat("hidden_states", (), STATES, (State("states", 0),), _add_states)
TIME = Stat("time_grad", (), TIME_GRAD, (State("time_sq", 0, (2,)), State("time_n", 0, (1,))), _add_time)
"""dL_T/dh_t on one rank is the global batch's times W (each rank's loss is its own batch's mean)."""


class Gates:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context):
        self.ctx = ctx
        self.found: list[Row] = []
        for name, m in model.named_modules():
            if (isinstance(m, recurrent.CELLS) or isinstance(m, nn.RNNBase) and m.mode in recurrent.GATES) \
                    and selects(chosen, name, m):
                row = Row(name or type(m).__name__, ctx, (GATE_VALUES, HIDDEN_STATES, TIME))
                row.module, row.unmodelled = m, ""
                self.found.append(row)

    def install(self, add: Callable) -> None:
        for row in self.found:
            hook = self._on_cell if isinstance(row.module, recurrent.CELLS) else self._on_layer
            add(row.module.register_forward_hook(eager(hook(row)), with_kwargs=True))

    def _on_layer(self, row: Row):
        def hook(module, args, kwargs, output):
            if not self.ctx.active or recomputing():
                return
            with self.ctx.paused(), torch.enable_grad():  # its tanh calls are not the model's
                unrolled = recurrent.unroll(module, args, kwargs)
            if unrolled is None:
                row.unmodelled = "PackedSequence input: gates and gradients through time are not probed for it"
                return
            self.ctx.place(row)
            with torch.no_grad(), self.ctx.paused():
                row.feed(GATES, Seen(unrolled.gates))
                row.feed(STATES, Seen(unrolled.states))
            outputs = recurrent.module_outputs(module, output)
            needing = [k for k, o in enumerate(outputs) if o.requires_grad]
            if needing:
                torch.autograd.graph.register_multi_grad_hook(
                    [outputs[k] for k in needing], _on_grads(row, unrolled, needing, len(outputs), outputs[0].dim() == 2))
        return hook

    def _on_cell(self, row: Row):
        def hook(module, args, kwargs, output):
            if not self.ctx.active or recomputing():
                return
            with torch.no_grad(), self.ctx.paused():
                pre = recurrent.cell_gates(module, args, kwargs)
                if pre is None:
                    return
                self.ctx.place(row)
                h = output[0] if isinstance(output, tuple) else output
                row.feed(GATES, Seen([pre.unsqueeze(0)]))
                row.feed(STATES, Seen([[h.detach()]]))
        return hook

    def state(self) -> list[Row]:
        return self.found

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        return [(row.order, r) for row in self.found if row.values["gates"] is not None for r in _rows(row, window)]

    def covers(self) -> dict[int, str | None]:
        return {id(row.module): f"{type(row.module).__name__}: {row.unmodelled}" if row.unmodelled else None
                for row in self.found}


def _on_grads(row: Row, unrolled: "recurrent.Unrolled", needing: list[int], n: int, unbatched: bool):
    def hook(grads):
        full: list = [None] * n
        for k, g in zip(needing, grads):
            full[k] = g
        full = recurrent.align(row.module, full, unbatched)
        if all(g is None for g in full):
            return
        with torch.enable_grad():
            norms = unrolled.time_grads(full)
        row.feed(TIME_GRAD, Seen(norms))
    return hook


def _rows(row: Row, window: Window) -> list[dict]:
    """Per (layer, direction): a row for the hidden state (``time_grad``: RMS over the window's
    backward passes of ||dL_T/dh_t|| for t = 1..T, ``time_grad_ratio`` its first over its last) and
    a row per gate (its values' moments and saturated share)."""
    module, mode, v = row.module, recurrent.mode_of(row.module), row.values
    kind, gates = recurrent.KINDS[mode], recurrent.GATES[mode]
    gate_sums, state_sums = v["gates"].tolist(), v["states"].tolist()
    time = (v["time_sq"] / v["time_n"]).sqrt().tolist() if v["time_sq"] is not None else None
    common = {"first_step": window.first_step, "last_step": window.last_step, "sampled_steps": int(v["steps"][0])}
    out = []
    for k, suffix in enumerate(recurrent.row_names(module)):
        mean, var = stats.pooled_mean_var(state_sums[k])
        grads = time[k] if time is not None else None
        ratio = grads[0] / grads[-1] if grads and grads[-1] > 0 else math.nan
        name = row.name if suffix is None else f"{row.name}.{suffix}"
        out.append({"layer": name, "type": kind, "activation": None,
                    "units": getattr(module, "proj_size", 0) or module.hidden_size, **common, "act_mean": mean,
                    "act_std": math.sqrt(var), "time_grad": grads, "time_grad_ratio": ratio,
                    "act_grad_norm": grads[-1] if grads else math.nan})
        for g, (gate, fn) in enumerate(gates):
            s, s2, n, sat = gate_sums[k][g]
            mean, var = stats.pooled_mean_var((s, s2, n))
            out.append({"layer": f"{name}:{gate}", "type": f"{kind} gate", "activation": fn,
                        "units": module.hidden_size, **common, "act_mean": mean, "act_std": math.sqrt(var),
                        "saturated": sat / n if n else math.nan})
    return out
