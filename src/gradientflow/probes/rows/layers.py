"""Layer rows: each parametric module ``layers.walk`` finds (Linear, Conv1d/2d/3d, Maxout), with the
activation module it feeds.

Taps: the module's forward hook hands it x (``INPUT``) and z (``PRE``; with no activation module,
z is also h, ``ACT``); the activation module's hook hands it h with z; tensor hooks hand it dL/dz,
dL/dx and dL/dh; the weight's post-accumulate hook (or ``weight_grads``, once per optimiser step)
dL/dW; the step's start the weights after an update beside a copy from before it (``UPDATE``).
A layer whose input is the previous layer's activation (the same tensor) takes that tensor's
moments and its dL/dx from the previous row instead of measuring them again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...activations import Maxout
from ...layers import LayerFilter, walk
from .. import builtin
from ..schedule import Plan
from ..state import ACT, ACT_GRAD, CALL, INPUT, INPUT_GRAD, PRE, PRE_GRAD, UPDATE, WEIGHT_GRAD, Context, Seen
from . import ActivationRow, Window, on_grad


class Layers:
    def __init__(self, model: nn.Module, chosen: LayerFilter, ctx: Context, stats: tuple, users: tuple,
                 grads_at_step: bool):
        self.ctx, self.users, self.grads_at_step = ctx, users, grads_at_step
        self.found: list[ActivationRow] = []
        for layer in walk(model, chosen):
            act = layer.activation
            self.found.append(ActivationRow(
                layer.name, ctx, stats, unit_dim=layer.unit_dim, nonlinear=layer.nonlinearity is not None,
                saturated_region=act.saturated_region() if act else (), dead_region=act.dead_region() if act else (),
                hist_range=act.output_range() if act else (None, None), layer=layer))
        self.last: tuple[Tensor, Seen, ActivationRow] | None = None  # the last activation seen in this forward
        self.snapshots: dict[int, Tensor] = {}

    def install(self, add: Callable) -> None:
        for row in self.found:
            layer = row.layer
            add(layer.module.register_forward_hook(self._on_output(row)))
            if layer.activation_module is not None:
                add(layer.activation_module.register_forward_hook(self._on_activation(row)))
            if layer.weight.requires_grad and row.reads(WEIGHT_GRAD) and not self.grads_at_step:
                add(layer.weight.register_post_accumulate_grad_hook(self._on_weight_grad(row)))

    @torch.no_grad()
    def step(self, plan: Plan, measure_update: bool) -> None:
        """A step starts: measure the update since the copy, copy the weights if the plan says so."""
        if measure_update:
            for i, row in enumerate(self.found):
                if i in self.snapshots:
                    row.feed(UPDATE, Seen(row.layer.weight.detach(), z=self.snapshots[i]))
        if plan.snapshot:
            for i, row in enumerate(self.found):
                if row.reads(UPDATE):
                    w = row.layer.weight.detach()
                    if i not in self.snapshots or self.snapshots[i].shape != w.shape:
                        self.snapshots[i] = torch.empty_like(w)
                    self.snapshots[i].copy_(w)
        self.last = None

    def _activation(self, row: ActivationRow, seen: Seen) -> None:
        row.feed(ACT, seen)
        self.last = (seen.t, seen, row)

    def _on_output(self, row: ActivationRow):
        no_activation = row.layer.activation_module is None
        grad_taps = (PRE_GRAD, ACT_GRAD) if no_activation else (PRE_GRAD,)

        def hook(module, inputs, output):
            if not self.ctx.active or not isinstance(output, Tensor):
                return
            self.ctx.place(row)
            x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            last = self.last
            linked = x is not None and last is not None and x is last[0]
            with torch.no_grad():
                row.feed(CALL, None)
                if x is not None:
                    row.feed(INPUT, last[1] if linked else Seen(x))
                out = Seen(output, z=output)
                row.feed(PRE, out)
                if no_activation:  # z is the layer's output h
                    self._activation(row, out)
            if output.requires_grad and any(row.reads(t) for t in grad_taps):
                output.register_hook(on_grad(row, grad_taps))
            if linked:
                row.gx_from = last[2]  # dL/dx is the previous layer's dL/dh
            elif x is not None and x.requires_grad and row.reads(INPUT_GRAD):
                x.register_hook(on_grad(row, (INPUT_GRAD,)))
        return hook

    def _on_activation(self, row: ActivationRow):
        def hook(module, inputs, output):
            if not self.ctx.active or not isinstance(output, Tensor):
                return
            with torch.no_grad():
                self._activation(row, Seen(output, z=inputs[0]))
            if output.requires_grad and row.reads(ACT_GRAD):
                output.register_hook(on_grad(row, (ACT_GRAD,)))
        return hook

    def _on_weight_grad(self, row: ActivationRow):
        def hook(param: Tensor):
            if self.ctx.active and param.grad is not None:
                with torch.no_grad():
                    row.feed(WEIGHT_GRAD, Seen(param.grad))
        return hook

    @torch.no_grad()
    def weight_grads(self) -> None:
        """Each layer's weight gradient as the optimiser will see it (accumulated, all-reduced)."""
        for row in self.found:
            g = row.layer.weight.grad
            if g is not None and row.layer.weight.requires_grad:
                row.feed(WEIGHT_GRAD, Seen(g))

    def state(self) -> list[ActivationRow]:
        return self.found

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        out = []
        for row in self.found:
            if not row.values["n"][0]:
                continue
            row.steps = window.steps(row)
            walked = row.layer
            header = {"layer": row.name, "type": type(walked.module).__name__, "activation": walked.nonlinearity,
                      "units": walked.units, "first_step": window.first_step, "last_step": window.last_step,
                      "sampled_steps": int(row.steps)}
            out.append((row.order, builtin.columns(row, header, self.users)))
        return out

    def covers(self) -> dict[int, str | None]:
        covered = {}
        for row in self.found:
            module = row.layer.module
            inside = module.modules() if isinstance(module, Maxout) else (module,)
            covered.update({id(m): None for m in inside})
            if row.layer.activation_module is not None:
                covered[id(row.layer.activation_module)] = None
        return covered

