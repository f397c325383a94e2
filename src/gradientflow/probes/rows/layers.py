"""Layer rows: each parametric module ``layers.walk`` finds (Linear, Conv1d/2d/3d, Maxout, and
transposed linear layers such as GPT-2's ``Conv1D``), each with the nonlinearity that consumes its
output, found by data flow on every call.

On a sampled step the forward hooks follow each layer call's output z (``layers.Flow``, the walk's
own) through the modules that pass a signal on unchanged in kind (normalisation, dropout,
``Identity``) to the activation module that consumes it: that call's activation is this row's. An
activation module shared by several layers (one ``ReLU`` called after each of two convolutions) is
seen at each of them; a layer whose output no activation consumes has h = z (a read-out, a
projection into a residual sum). An activation module call that consumes no probed layer's output (a ReLU after a residual sum) gets a
row of its own, named after the module, with the activation columns.

Taps: the layer's forward hook hands it x (``INPUT``) and z (``PRE``); the consuming activation's
hook hands it h with z (``ACT``), or the end of the forward z itself; tensor hooks hand it dL/dz,
dL/dx and dL/dh; ``weights.Weights`` its dL/dW and its update.
An input that is a tensor some row already measured (its z or h) reuses its moments and its
gradient instead of measuring them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...activations import Activation, Maxout
from ...layers import Flow, LayerFilter, activation_of, passes_on, walk
from .. import builtin
from ..state import ACT, ACT_GRAD, CALL, INPUT, INPUT_GRAD, PRE, PRE_GRAD, Context, Seen, eager, recomputing
from . import ActivationRow, Window, on_grad
from .calls import CallRows
from .weights import Weights


@dataclass(eq=False)
class _Call:
    """One call of a layer in this forward: its output z and whether an activation consumed it."""

    row: ActivationRow
    z: Tensor
    seen: Seen
    consumed: bool = False


class Layers:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, stats: tuple, users: tuple,
                 weights: Weights, activation_stats: tuple = ()):
        self.ctx, self.users = ctx, users
        self.found = [ActivationRow(layer.name, ctx, stats, unit_dim=layer.unit_dim, layer=layer,
                                    nonlinear=isinstance(layer.module, Maxout)) for layer in walk(model, chosen)]
        for row in self.found:
            weights.hold(row, row.layer.parameter, row.layer.unit_rows)
        named = list(model.named_modules())
        inside = {id(m) for row in self.found if isinstance(row.layer.module, Maxout) for m in row.layer.module.modules()}
        self.activations = [(name, m, record) for name, m in named if id(m) not in inside
                            for record in [activation_of(m)] if record is not None and not isinstance(m, nn.Identity)]
        self.passing = [m for _, m in named if passes_on(m)]
        self.alone = CallRows(ctx, activation_stats, users)  # activation calls that consume no layer's output
        self._forward()

    def _forward(self) -> None:
        """Forget the last forward's tensors (the next one starts)."""
        self.flow = Flow()  # a tensor -> the layer call (``_Call``) whose output z it carries
        self.made: dict[int, tuple[Tensor, ActivationRow, Seen, str]] = {}  # a row's z or h: its moments, grad state
        self.calls: list[_Call] = []

    def install(self, add: Callable) -> None:
        for row in self.found:
            add(row.layer.module.register_forward_hook(eager(self._on_output(row))))
        for name, module, record in self.activations:
            add(module.register_forward_hook(eager(self._on_activation(name or type(module).__name__, record))))
        for module in self.passing:
            add(module.register_forward_hook(eager(self._on_passing)))

    def step(self) -> None:
        """A step starts: whatever an interrupted forward left is forgotten."""
        self._forward()

    def end_forward(self) -> None:
        """The forward has ended: a layer call whose output no activation consumed has h = z."""
        with torch.no_grad():
            for call in self.calls:
                if not call.consumed:
                    call.row.feed(ACT, call.seen)
        self._forward()

    def _on_output(self, row: ActivationRow):
        def hook(module, inputs, output):
            if not self.ctx.active or not isinstance(output, Tensor) or recomputing():
                return
            self.ctx.place(row)
            x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            known = self.made.get(id(x)) if x is not None else None
            known = known if known is not None and known[0] is x else None
            out = Seen(output, z=output)
            with torch.no_grad():
                row.feed(CALL, None)
                if x is not None:
                    row.feed(INPUT, known[2] if known else Seen(x))
                row.feed(PRE, out)
                if isinstance(module, Maxout):  # its own nonlinearity: h is its output
                    row.feed(ACT, out)
            call = _Call(row, output, out, consumed=isinstance(module, Maxout))
            if not call.consumed:
                self.calls.append(call)
                self.flow.made(output, call)
            self.made[id(output)] = (output, row, out, "gh" if call.consumed else "gz")
            if output.requires_grad and (row.reads(PRE_GRAD) or row.reads(ACT_GRAD)):
                output.register_hook(_on_z_grad(call))
            if known:
                row.gx_from = (known[1], known[3])  # dL/dx is that row's gradient of the same tensor
            elif x is not None and x.requires_grad and row.reads(INPUT_GRAD):
                x.register_hook(on_grad(row, (INPUT_GRAD,)))
        return hook

    def _on_passing(self, module, inputs, output) -> None:
        if self.ctx.active:
            self.flow.passed(module, inputs, output)

    def _on_activation(self, name: str, record: Activation):
        def hook(module, inputs, output):
            if not self.ctx.active or not isinstance(output, Tensor) or not inputs \
                    or not isinstance(inputs[0], Tensor) or recomputing():
                return
            z = inputs[0]
            call = self.flow.of(z)
            if call is None or call.consumed:
                self.alone.seen(name, type(module).__name__, record, z, output, kind="activation")
                return
            call.consumed, row = True, call.row
            if row.record is None:
                with self.ctx.paused():  # the regions are found with torch calls of the probe's own
                    _pair(row, record)
            seen = Seen(output, z=z)
            with torch.no_grad():
                row.feed(ACT, seen)
            self.made[id(output)] = (output, row, seen, "gh")
            if output.requires_grad and row.reads(ACT_GRAD):
                output.register_hook(on_grad(row, (ACT_GRAD,)))
        return hook

    def state(self) -> list[ActivationRow]:
        return [*self.found, *self.alone.state()]

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        out = []
        for row in self.found:
            if not row.values["n"][0]:
                continue
            row.steps = window.steps(row)
            walked = row.layer
            activation = "maxout" if isinstance(walked.module, Maxout) else row.record.name if row.record else None
            header = {"layer": row.name, "type": type(walked.module).__name__, "activation": activation,
                      "units": walked.units, "first_step": window.first_step, "last_step": window.last_step,
                      "sampled_steps": int(row.steps)}
            out.append((row.order, builtin.columns(row, header, self.users)))
        return out + self.alone.rows(window)

    def covers(self) -> dict[int, str | None]:
        covered = {}
        for row in self.found:
            module = row.layer.module
            covered.update({id(m): None for m in (module.modules() if isinstance(module, Maxout) else (module,))})
        covered.update({id(m): None for _, m, _ in self.activations})
        return covered


def _pair(row: ActivationRow, record: Activation) -> None:
    """The row's nonlinearity, from the first activation that consumes its output."""
    row.record, row.nonlinear = record, True
    row.saturated_region, row.dead_region = record.saturated_region(), record.dead_region()
    if row.hist_range == (None, None):
        row.hist_range = record.output_range()


def _on_z_grad(call: _Call):
    """dL/dz of one call; it is also dL/dh when no activation consumed z (known once the forward ended)."""
    def hook(grad: Tensor):
        with torch.no_grad():
            seen = Seen(grad)
            call.row.feed(PRE_GRAD, seen)
            if not call.consumed:
                call.row.feed(ACT_GRAD, seen)
    return hook
