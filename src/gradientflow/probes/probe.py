"""``watch(model)``: per-layer diagnostics of any ``nn.Module`` while it trains, from hooks.

A *layer* is what ``layers.walk`` finds: a parametric module (Linear, Conv1d/2d/3d, Maxout) with
the activation module that follows it in the model's module order, if any (``layers=`` overrides
the choice by type, by name or by a predicate). Hooks add each sampled step's statistics into buffers preallocated on the
model's device: nothing is read back until a window closes (``flush``/``summary``, or every
``window`` steps), and memory is O(layers x bins) whatever the number of steps.

A *step* is one forward pass of the watched model in training mode with gradients enabled;
evaluation passes (``model.eval()`` or ``torch.no_grad()``) are not counted. Every ``every``-th
step is sampled (the first step always).

Columns of ``summary()`` (one row per layer, in forward order), pooled over the window's sampled
steps; x is the layer's input, z = W x + b its output (the pre-activation), h = f(z):

- ``act_mean``, ``act_std``: of h; ``hist``: counts of h in ``bins`` fixed bins over
  [``hist_lo``, ``hist_hi``] (the activation's range where bounded, else fixed at the first step),
  from an evenly strided sample of at most ``HIST_SAMPLE`` values per layer and step (a full
  histogram of a 256 x 500 layer costs torch's CPU kernels more than the layer's matmul);
- ``saturated``: share of z in the activation's saturated region (|f'| < 5% of its max; C1, C15);
- ``zero``: share of h exactly 0 (both shares, and the histogram, from ``SHARE_ROWS`` strided samples
  of the batch unless ``exact``; the histogram and ``sign_coherence`` on the first sampled step of
  each window and every ``update_every``-th); ``dead``: share of units whose z stayed in the activation's
  zero-slope region for every sample of the window (C7; 0 for activations whose slope is never
  exactly 0, NaN without an activation);
- ``input_mean_over_std``: |mean x| / std x, how far the inputs are from zero-centred (C4, C19);
  ``in_mean``, ``in_std``: of x (for a normalisation row, of what it normalises);
- ``weight_grad_norm``: RMS over steps of ||dL/dW||; ``act_grad_norm``: RMS of ||dL/dh||;
  ``grad_factor``: this layer's ``act_grad_norm`` over the next layer's (C2, C3);
- ``glorot_forward`` = Var z / Var x and ``glorot_backward`` = Var(dL/dx) / Var(dL/dz): the two
  conditions of Glorot & Bengio (2010), eqs. 10-11, both 1 when the layer keeps the variance (C18);
- ``update_ratio``: ||W_t - W_{t-1}|| / ||W_{t-1}|| over one step, measured once every
  ``update_every`` sampled steps (it needs a copy of the weights, so it is sampled more sparsely);
- ``sign_coherence``: mean over units of the share of the unit's weight-gradient entries with the
  majority sign (C4's zig-zag: 1.0 for a layer fed by sigmoid outputs at batch size 1), averaged
  over at most ``SIGN_UNITS`` evenly spaced units per step;
- ``distinct_units``: units that are not exact copies of another, read at the flush (C14).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..activations import CATALOG, Activation, Maxout
from ..layers import PARAMETRIC, Layer, LayerFilter, selects, walk
from . import attention, recurrent, stats
from .functional import Calls
from .stats import Statistic, choose as choose_stats  # (the parameter ``stats`` shadows the module)
from .sums import Sums

HIST_SAMPLE = 8192  # values per layer and step counted into the histogram (an evenly strided sample)
SIGN_UNITS = 64  # units per layer and step whose sign coherence is averaged
SHARE_ROWS = 32  # samples of the batch per step on which the shares (saturated, zero) are counted

# slots of a layer's accumulator row
_N, _H, _X, _Z, _GZ, _GX, _GH = 0, 1, 4, 7, 10, 13, 16  # moments take 3 slots each
_SAT, _NONZERO, _WG, _WG_N, _SIGN, _SIGN_N, _UPD, _UPD_N, _SAT_N, _NONZERO_N = 19, 20, 21, 22, 23, 24, 25, 26, 27, 28
_SLOTS = 29


@dataclass
class _Layer:
    """A walked ``Layer`` and the on-device buffers its hooks fill."""

    layer: Layer
    at: int = -1  # where its sums start in the probe's ``Sums``
    hist: Tensor = None
    ever_active: Tensor | None = None
    saturated_region: tuple = ()
    dead_region: tuple = ()
    hist_range: tuple[float | None, float | None] = (None, None)
    order: int = -1  # position in the forward pass, set when first seen
    snapshot: Tensor | None = None
    last_h_moments: tuple | None = None
    gx_from: "_Layer | None" = None  # when this layer's input is that layer's output

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def module(self) -> nn.Module:
        return self.layer.module

    @property
    def activation(self) -> nn.Module | None:
        return self.layer.activation_module

    @property
    def h_grad_slot(self) -> int:
        """Where dL/dh accumulates: its own slot, or z's when there is no activation (h = z)."""
        return _GH if self.activation is not None else _GZ


NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)  # batch, instance, layer and group norm


@dataclass
class _Attention:
    """An ``nn.MultiheadAttention`` (or a ``scaled_dot_product_attention`` call, with no module)
    and its per-head sums (``attention.head_sums``, ``attention.sdpa_sums``), one row per head."""

    name: str
    module: nn.Module | None
    head_dim: int
    acc: Tensor | None = None
    order: int = -1


@dataclass
class _Recurrent:
    """An ``nn.LSTM``/``GRU``/``RNN`` and its sums over the window (``recurrent``): per (layer,
    direction) row and gate [sum, sum of squares, count, saturated count] of the gate values;
    per row the moments of its hidden states; per row and time step the sum of squared
    ||dL_T/dh_t|| and, per time step, how many backward passes added to it."""

    name: str
    module: nn.Module
    gates: Tensor | None = None
    states: Tensor | None = None
    time_sq: Tensor | None = None
    time_n: Tensor | None = None
    steps: int = 0
    order: int = -1
    unmodelled: str = ""


@dataclass
class _Call:
    """A row without weights of its own, h = f(z): a nonlinearity called as a function
    (``functional.Calls``; type "function") or a normalisation layer (its class name; z its input,
    h its output). The row has the activation columns (moments, histogram, saturated, zero, dead,
    dL/dh) and the input's mean and std (``in_mean``, ``in_std``): what normalisation hides."""

    name: str  # "module.path:relu", or the normalisation module's path
    function: str  # "relu", or the normalisation module's class name
    record: Activation | None  # the catalog record for its arguments, None where there is none (softmax)
    units: int
    unit_dim: int
    at: int
    hist: Tensor
    hist_range: tuple[float | None, float | None]
    order: int
    ever_active: Tensor | None = None
    norm: bool = False
    saturated_region: tuple = ()
    dead_region: tuple = ()


class Probe:
    """Hooks on a model's layers and the on-device buffers they fill. Use ``watch()``."""

    def __init__(self, model: nn.Module, *, every: int = 1, layers: LayerFilter = None, bins: int = 50,
                 update_every: int = 10, window: int | None = None, stats=None, exact: bool = False,
                 keep_windows: int = 1000, steps: str = "forward"):
        if steps not in ("forward", "manual"):
            raise ValueError(f"steps={steps!r} must be 'forward' (each training forward pass of the model is a "
                             "step) or 'manual' (begin_step() and end_step() mark them)")
        self.manual = steps == "manual"
        self.world, self.rank = _ranks()
        # the weight gradient read once per optimiser step: the accumulated (manual) or the
        # all-reduced (DistributedDataParallel) one, as the optimiser sees it
        self._grads_at_step = self.manual or self.world > 1
        for name, v, lo in (("every", every, 1), ("bins", bins, 2), ("update_every", update_every, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
        if not isinstance(keep_windows, int) or keep_windows < 2:
            raise ValueError(f"keep_windows={keep_windows!r} must be an integer >= 2")
        self.keep_windows, self.thinned = keep_windows, 0
        self.thinned_stored = 0  # histogram windows thinned out of the run store (``flush(run)``)
        self._stored_hist_windows = 0
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window={window!r} must be None or an integer >= 1")
        self.model, self.every, self.bins, self.update_every, self.window = model, every, bins, update_every, window
        self.groups, self.custom = choose_stats(stats)
        self.exact = exact
        self._sampled = 0  # sampled steps so far
        self._window_sampled = 0  # ... in the open window
        self._heavy = False  # this step also counts the histogram and the sign coherence
        self._window_heavy = False  # the open window has had such a step
        self._custom_of: dict[str, list[tuple[int, Statistic]]] = {}
        for i, c in enumerate(self.custom):
            self._custom_of.setdefault(c.of, []).append((_SLOTS + 2 * i, c))
        self._slots = _SLOTS + 2 * len(self.custom)  # a user statistic adds [sum, count] to each row's buffer
        want = self.groups.__contains__
        self._grads = want("gradients") or want("glorot") or "activation_grad" in self._custom_of
        self._weight_grads = want("gradients") or want("sign_coherence") or "weight_grad" in self._custom_of
        self.step = 0
        self._filter = layers
        self.layers = [_Layer(layer) for layer in walk(model, layers)]
        self._active = False
        self._measure_update = False
        self._last_h: Tensor | None = None
        self._last_h_layer: _Layer | None = None
        self._seen = 0
        self._window_start = 1
        self._rows: list[dict] = []  # closed windows not yet written to a run store
        self._history: list[dict] = []
        self._handles: list = []  # the step hooks, for as long as the probe is attached
        self._step_handles: list = []  # the measuring hooks, while steps are sampled
        self._calls = Calls(self._on_call, self._on_sdpa)
        self._functional: bool | None = None  # None until the first sampled step has looked
        self._call_rows: dict[str, _Call] = {}
        self._attention = [_Attention(name or type(m).__name__, m, m.head_dim) for name, m in model.named_modules()
                           if isinstance(m, nn.MultiheadAttention) and selects(layers, name, m)]
        self._sdpa: dict[str, _Attention] = {}  # scaled_dot_product_attention calls, by row name
        self._recurrent = [_Recurrent(name or type(m).__name__, m) for name, m in model.named_modules()
                           if (isinstance(m, recurrent.CELLS) or isinstance(m, nn.RNNBase) and m.mode in recurrent.GATES)
                           and selects(layers, name, m)]
        self._norms = [(name or type(m).__name__, m) for name, m in model.named_modules()
                       if isinstance(m, NORMS) and selects(layers, name, m)]
        self._modules = dict(model.named_modules())  # a function row is kept when its module is chosen
        if not (self.layers or self._attention or self._recurrent or self._norms):
            if layers is not None:
                raise ValueError(f"no layers to probe: layers={layers!r} matches no layer, normalisation, "
                                 "attention or recurrent module")
            raise ValueError("nothing to probe: the model has no Linear/Conv/Maxout module matching the filter, no "
                             "normalisation, attention or recurrent layer")

    # --- attach / detach ---

    def attach(self) -> "Probe":
        device = next(self.model.parameters()).device
        self._sums = Sums(device)
        for layer in self.layers:
            layer.at = self._sums.new_row(self._slots)
            layer.hist = torch.zeros(self.bins, dtype=torch.float32, device=device)
            act = layer.layer.activation
            if act is not None:
                layer.saturated_region = act.saturated_region()
                layer.dead_region = act.dead_region()
                layer.hist_range = act.output_range()
        if not self.manual:
            self._handles.append(self.model.register_forward_pre_hook(self._on_step))
            self._handles.append(self.model.register_forward_hook(self._on_step_end, always_call=True))
        if self.world > 1 and not self.manual:  # DDP: the gradient after the all-reduce, before the update
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            weights = {id(layer.layer.weight) for layer in self.layers}

            def before_step(optimizer, args, kwargs):
                if any(id(p) in weights for group in optimizer.param_groups for p in group["params"]):
                    self.before_optimizer_step()

            self._handles.append(register_optimizer_step_pre_hook(before_step))
        return self

    def begin_step(self) -> None:
        """A training step starts (``steps="manual"``): whatever runs until ``end_step``, however
        many forward and backward passes of whichever submodules, counts as one step. For loops
        where the watched module's own forward is not called once per step (a Lightning module
        whose ``training_step`` calls ``self.net``; several micro-batches per optimiser step). Call
        ``before_optimizer_step()`` when the step's gradients are complete: the weight-gradient
        statistics are read there, once per step."""
        self._on_step(self.model, ())

    def end_step(self) -> None:
        """The step begun by ``begin_step`` has ended."""
        self._on_step_end(self.model, (), None)

    def _install(self) -> None:
        """The hooks that measure, for a sampled step. They stay while the steps are sampled and go
        at the first step that is not: a step the probe does not sample runs only the model's two
        step hooks (its layers' hooks would each cost Python calls in the forward and backward)."""
        add = self._step_handles.append
        for layer in self.layers:
            add(layer.module.register_forward_hook(self._on_layer(layer)))
            if layer.activation is not None:
                add(layer.activation.register_forward_hook(self._on_activation(layer)))
            if layer.layer.weight.requires_grad and self._weight_grads and not self._grads_at_step:
                add(layer.layer.weight.register_post_accumulate_grad_hook(self._on_weight_grad(layer)))
        for name, module in self._norms:
            add(module.register_forward_hook(self._on_norm(name)))
        for att in self._attention:
            add(att.module.register_forward_hook(self._on_attention(att), with_kwargs=True))
        for rec in self._recurrent:
            hook = self._on_cell if isinstance(rec.module, recurrent.CELLS) else self._on_recurrent
            add(rec.module.register_forward_hook(hook(rec), with_kwargs=True))

    def _uninstall(self) -> None:
        for h in self._step_handles:
            h.remove()
        self._step_handles.clear()

    def detach(self) -> None:
        self._calls.stop()
        self._uninstall()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last_h = None

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    # --- hooks ---

    def _on_step(self, module, inputs) -> None:
        if not (module.training and torch.is_grad_enabled()):
            self._active = False
            return
        if self.window is not None and self.step > 0 and self.step % self.window == 0 and self.step >= self._window_start:
            self._close_window()
        self.step += 1
        self._active = (self.step - 1) % self.every == 0
        if self._active and not self._step_handles:
            self._install()
        elif not self._active and self._step_handles:
            self._uninstall()
        self._sums.settle()  # the last step's values, in one go
        if self._active:
            self._window_sampled += 1
            self._heavy = self.exact or not self._window_heavy or self._sampled % self.update_every == 0
            self._window_heavy |= self._heavy
            self._sampled += 1
        if self._measure_update:
            self._update_ratios()
        # copy the weights one step before every update_every-th sampled step
        nxt = self.step  # the next step, counted from 0 (self.step already counts this one from 1)
        self._measure_update = "updates" in self.groups and nxt % self.every == 0 \
            and (nxt // self.every) % self.update_every == self.update_every - 1
        if self._measure_update:
            for layer in self.layers:
                w = layer.layer.weight.detach()
                if layer.snapshot is None or layer.snapshot.shape != w.shape:
                    layer.snapshot = torch.empty_like(w)
                layer.snapshot.copy_(w)
        self._last_h = None
        if self._active and self._functional is not False:  # functional activations: sampled steps only
            self._calls.start(self.model)

    def _on_step_end(self, module, inputs, output) -> None:
        if self._calls.active:
            self._calls.stop()
            if self._functional is None:
                self._functional = bool(self._call_rows or self._sdpa)  # none found: never look again

    @torch.no_grad()
    def _update_ratios(self) -> None:
        for layer in self.layers:
            if layer.snapshot is None:
                continue
            w = layer.layer.weight.detach()
            ratio = (w - layer.snapshot).norm() / layer.snapshot.norm().clamp(min=1e-30)
            self._sums.add(layer.at + _UPD, ratio)
            self._sums.add(layer.at + _UPD_N, 1)
        self._measure_update = False

    def _place(self, row) -> None:
        """Give a row its position in the forward pass the first time it is seen."""
        if row.order < 0:
            row.order = self._seen
            self._seen += 1

    def _on_layer(self, layer: _Layer):
        def hook(module, inputs, output):
            if not self._active or not isinstance(output, Tensor):
                return
            self._place(layer)
            at = layer.at
            x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            with torch.no_grad():
                self._sums.add(at + _N, 1)
                if x is not None:
                    if x is self._last_h:  # the previous layer's output: its moments are already counted
                        self._add_moments(at + _X, self._last_h_layer.last_h_moments)
                    else:
                        self._add_moments(at + _X, stats.moment_sums(x))
                if x is not None and "input" in self._custom_of:
                    self._add_custom(at, "input", x)
                if "pre_activation" in self._custom_of:
                    self._add_custom(at, "pre_activation", output)
                if layer.activation is None:  # no activation: z is the layer's output h
                    self._activation_stats(layer, output, output)
                else:
                    self._add_moments(at + _Z, stats.moment_sums(output))
            if not self._grads:
                return
            if output.requires_grad:
                output.register_hook(self._grad_moments(at, _GZ, custom=layer.activation is None))
            if x is not None and x.requires_grad and x is not self._last_h and "glorot" in self.groups:
                x.register_hook(self._grad_moments(at, _GX))
            elif x is not None and x is self._last_h:
                layer.gx_from = self._last_h_layer  # dL/dx is the previous layer's dL/dh
        return hook

    def _on_activation(self, layer: _Layer):
        def hook(module, inputs, output):
            if not self._active or not isinstance(output, Tensor):
                return
            with torch.no_grad():
                self._activation_stats(layer, inputs[0], output)
            if output.requires_grad and self._grads:
                output.register_hook(self._grad_moments(layer.at, _GH, custom=True))
        return hook

    def _activation_stats(self, layer: _Layer, z: Tensor, h: Tensor) -> None:
        m = stats.moment_sums(h)
        self._add_moments(layer.at + _H, m)
        if layer.activation is None:
            self._add_moments(layer.at + _Z, m)
        layer.last_h_moments = m
        self._last_h, self._last_h_layer = h, layer
        if "activation" in self._custom_of:
            self._add_custom(layer.at, "activation", h)
        self._shape_stats(layer, z, h, layer.layer.unit_dim)

    def _shape_stats(self, row: "_Layer | _Call", z: Tensor | None, h: Tensor, unit_dim: int) -> None:
        """What a row's activation h = f(z) adds besides its moments: the histogram of h (its range
        fixed at the first sampled step where f is unbounded), the exact zeros of h, and with z the
        count in the saturated region and the units seen outside the dead region."""
        at, add = row.at, self._sums.add
        rows = None if self.exact else SHARE_ROWS
        h_rows = stats.sample_rows(h, rows)
        if "histogram" in self.groups and self._heavy:
            if row.hist_range[0] is None or row.hist_range[1] is None:
                lo, hi = row.hist_range
                spread = 1.5 * float(h.detach().abs().max()) or 1.0  # fixed once, at the first sampled step
                if self.world > 1:  # one range on every rank, so that their counts add up
                    spread = _max_over_ranks(spread, h.device)
                row.hist_range = (-spread if lo is None else lo, spread if hi is None else hi)
            row.hist += stats.histogram(h_rows, *row.hist_range, self.bins, HIST_SAMPLE)
        saturation = "saturation" in self.groups
        if saturation:
            add(at + _NONZERO, torch.count_nonzero(h_rows))  # counts the non-zeros: zero = 1 - this / n
            add(at + _NONZERO_N, h_rows.numel())
        if z is None:
            return
        if row.saturated_region and saturation:
            some = stats.sample_rows(z, rows)
            add(at + _SAT, stats.count_in_region(some, row.saturated_region))
            add(at + _SAT_N, some.numel())
        if row.dead_region and "dead" in self.groups:  # every sample: one active sample keeps a unit alive
            active = stats.units_active(z, unit_dim, row.dead_region)
            if row.ever_active is None:
                row.ever_active = torch.zeros(active.shape[0], dtype=torch.bool, device=z.device)
            row.ever_active |= active

    def _on_attention(self, att: _Attention):
        def hook(module, args, kwargs, output):
            if not self._active:
                return
            with self._calls.paused():  # the recomputation's softmax is not the model's own call
                sums = attention.head_sums(module, args, kwargs)
            self._attention_sums(att, sums)
        return hook

    def _attention_sums(self, att: _Attention, sums: Tensor | None) -> None:
        if sums is None:
            return
        self._place(att)
        att.acc = sums if att.acc is None else att.acc + sums

    def _chosen(self, row: str) -> bool:
        """Whether ``layers=`` chooses the module a function row is named after ("block.fc:relu")."""
        if self._filter is None:
            return True
        where = row.split(":")[0]
        module = self._modules.get(where, self.model if where == "model" else None)
        return module is not None and selects(self._filter, where if module is not self.model else "", module)

    def _on_sdpa(self, name: str, args: tuple, kwargs: dict) -> None:
        if name not in self._sdpa and not self._chosen(name):
            return
        with self._calls.paused():
            sums = attention.sdpa_sums(args, kwargs)
        if sums is not None:
            query = args[0] if args else kwargs["query"]
            att = self._sdpa.setdefault(name, _Attention(name, None, query.shape[-1]))
            self._attention_sums(att, sums)

    def _on_recurrent(self, rec: _Recurrent):
        def hook(module, args, kwargs, output):
            if not self._active:
                return
            with self._calls.paused(), torch.enable_grad():  # its tanh calls are not the model's
                unrolled = recurrent.unroll(module, args, kwargs)
            if unrolled is None:
                rec.unmodelled = "PackedSequence input: gates and gradients through time are not probed for it"
                return
            self._place(rec)
            with torch.no_grad(), self._calls.paused():
                self._gate_sums(rec, unrolled.gates, unrolled.states)
            outputs = recurrent.module_outputs(module, output)
            needing = [k for k, o in enumerate(outputs) if o.requires_grad]
            if needing:
                unbatched = outputs[0].dim() == 2
                torch.autograd.graph.register_multi_grad_hook(
                    [outputs[k] for k in needing], self._on_recurrent_grads(rec, unrolled, needing, len(outputs), unbatched))
        return hook

    def _on_cell(self, rec: _Recurrent):
        def hook(module, args, kwargs, output):
            if not self._active:
                return
            with torch.no_grad(), self._calls.paused():
                pre = recurrent.cell_gates(module, args, kwargs)
                if pre is None:
                    return
                self._place(rec)
                h = output[0] if isinstance(output, tuple) else output
                self._gate_sums(rec, [pre.unsqueeze(0)], [[h.detach()]])
        return hook

    def _gate_sums(self, rec: _Recurrent, gate_pre: list[Tensor], states: list[list[Tensor]]) -> None:
        """Add one call's gate values and saturated counts (``gate_pre``: per row, the gates'
        pre-activations (T, N, gates*H)), and its hidden states' moments."""
        gates = recurrent.GATES[recurrent.mode_of(rec.module)]
        H = rec.module.hidden_size
        sums = []
        for pre in gate_pre:
            for g, (_, fn) in enumerate(gates):
                z = pre[..., g * H:(g + 1) * H]
                sat = stats.count_in_region(z, CATALOG[fn].saturated_region())
                sums.append(torch.cat([stats.moments(CATALOG[fn](z)), sat.double().reshape(1)]))
        gate_sums = torch.stack(sums).reshape(len(gate_pre), len(gates), 4)
        state_sums = torch.stack([stats.moments(torch.stack(seq).detach()) for seq in states])
        rec.gates = gate_sums if rec.gates is None else rec.gates + gate_sums
        rec.states = state_sums if rec.states is None else rec.states + state_sums
        rec.steps += 1

    def _on_recurrent_grads(self, rec: _Recurrent, unrolled: "recurrent.Unrolled", needing: list[int], n: int,
                            unbatched: bool):
        def hook(grads):
            full: list = [None] * n
            for k, g in zip(needing, grads):
                full[k] = g
            full = recurrent.align(rec.module, full, unbatched)
            if all(g is None for g in full):
                return
            with torch.enable_grad():
                norms = unrolled.time_grads(full)
            squares = norms.detach() ** 2
            T = squares.shape[1]
            if rec.time_sq is None:
                rec.time_sq, rec.time_n = squares, squares.new_ones(T)
                return
            if rec.time_sq.shape[1] < T:  # a longer sequence than any before: widen the sums
                grow = T - rec.time_sq.shape[1]
                rec.time_sq = torch.nn.functional.pad(rec.time_sq, (0, grow))
                rec.time_n = torch.nn.functional.pad(rec.time_n, (0, grow))
            rec.time_sq[:, :T] += squares
            rec.time_n[:T] += 1
        return hook

    def _on_norm(self, name: str):
        def hook(module, inputs, output):
            if self._active and inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor):
                self._on_call(name, type(module).__name__, None, inputs[0], output,
                              unit_dim=-1 if isinstance(module, nn.LayerNorm) else 1, norm=True)
        return hook

    def _on_call(self, name: str, function: str, record: Activation | None, z: Tensor | None, h: Tensor,
                 unit_dim: int | None = None, norm: bool = False) -> None:
        call = self._call_rows.get(name)
        if call is None:
            if not norm and not self._chosen(name):
                return
            if unit_dim is None:
                unit_dim = 1 if h.dim() == 4 else -1  # (N, C, H, W): channels; else the last dimension
            if h.dim() < 2:
                unit_dim = 0
            lo_hi = record.output_range() if record is not None else ((0.0, 1.0) if function == "softmax" else (None, None))
            call = _Call(name, function, record, h.shape[unit_dim] if h.dim() else 1, unit_dim,
                         self._sums.new_row(self._slots),
                         torch.zeros(self.bins, dtype=torch.float32, device=h.device), lo_hi, self._seen,
                         norm=norm, saturated_region=record.saturated_region() if record is not None else (),
                         dead_region=record.dead_region() if record is not None else ())
            self._seen += 1
            self._call_rows[name] = call
        at = call.at
        with torch.no_grad():
            self._sums.add(at + _N, 1)
            self._add_moments(at + _H, stats.moment_sums(h))
            if z is not None:
                self._add_moments(at + _Z, stats.moment_sums(z))
            if z is not None and "pre_activation" in self._custom_of:
                self._add_custom(at, "pre_activation", z)
            if "activation" in self._custom_of:
                self._add_custom(at, "activation", h)
            if z is None and function == "relu":
                z = h  # in place: relu's regions read the same on h (h = 0 exactly where z <= 0)
            self._shape_stats(call, z if h.dim() else None, h, call.unit_dim)
        if h.requires_grad and self._grads:
            h.register_hook(self._grad_moments(at, _GH, custom=True))

    def _steps(self, acc: list[float]) -> float:
        """The window's sampled steps: the steps marked by hand (micro-batches are one step), or
        else the row's own forward passes."""
        return self._window_sampled if self.manual else acc[_N]

    def _call_row(self, call: _Call, acc: list[float]) -> dict:
        h_mean, h_var = stats.pooled_mean_var(acc[_H:_H + 3])
        z_mean, z_var = stats.pooled_mean_var(acc[_Z:_Z + 3])
        record = call.record
        dead = math.nan
        if record is not None:
            dead = 1.0 - call.ever_active.double().mean().item() if call.ever_active is not None else 0.0
        nan = math.nan
        steps = self._steps(acc)
        return {
            "layer": call.name, "type": call.function if call.norm else "function",
            "activation": None if call.norm else record.name if record is not None else call.function,
            "units": call.units, "first_step": self._window_start, "last_step": self.step,
            "sampled_steps": int(steps), "act_mean": h_mean, "act_std": math.sqrt(h_var) if h_var == h_var else nan,
            "saturated": acc[_SAT] / acc[_SAT_N] if call.saturated_region and acc[_SAT_N]
            else (0.0 if record is not None else nan),
            "zero": 1 - acc[_NONZERO] / acc[_NONZERO_N] if acc[_NONZERO_N] else nan, "dead": dead,
            "input_mean_over_std": abs(z_mean) / math.sqrt(z_var) if z_var > 0 else nan,
            "in_mean": z_mean, "in_std": math.sqrt(z_var) if z_var == z_var else nan,
            "weight_grad_norm": nan,
            "act_grad_norm": math.sqrt(acc[_GH + 1] / steps) if acc[_GH + 2] else nan,
            "glorot_forward": nan, "glorot_backward": nan, "update_ratio": nan, "sign_coherence": nan,
            "distinct_units": nan, "hist_lo": call.hist_range[0], "hist_hi": call.hist_range[1],
            "hist": call.hist.tolist(),
        }

    def _grad_moments(self, at: int, slot: int, custom: bool = False):
        """A tensor hook adding the moments of a gradient; ``custom``: it is dL/dh, which user
        statistics ``of="activation_grad"`` also see."""
        def hook(grad: Tensor):
            with torch.no_grad():
                self._add_moments(at + slot, stats.moment_sums(grad))
                if custom and "activation_grad" in self._custom_of:
                    self._add_custom(at, "activation_grad", grad)
        return hook

    def _add_moments(self, at: int, m: tuple) -> None:
        s, s2, n = m
        self._sums.add(at, s)
        self._sums.add(at + 1, s2)
        self._sums.add(at + 2, n)

    def _add_custom(self, at: int, of: str, t: Tensor) -> None:
        """Add each user statistic of this tensor into its [sum, count] slots."""
        t = t.detach()
        for slot, c in self._custom_of[of]:
            value = c.fn(t)
            if not isinstance(value, Tensor) or value.numel() != 1:
                got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"Statistic {c.name!r} must return a one-element tensor on the device, got {got}")
            self._sums.add(at + slot, value.reshape(()))
            self._sums.add(at + slot + 1, 1)

    def _on_weight_grad(self, layer: _Layer):
        def hook(param: Tensor):
            if self._active and param.grad is not None:
                self._weight_grad_stats(layer, param.grad)
        return hook

    @torch.no_grad()
    def _weight_grad_stats(self, layer: _Layer, g: Tensor) -> None:
        if "gradients" in self.groups:
            self._sums.add(layer.at + _WG, torch.dot(g.reshape(-1), g.reshape(-1)))
            self._sums.add(layer.at + _WG_N, 1)
        if "sign_coherence" in self.groups and self._heavy:
            self._sums.add(layer.at + _SIGN, stats.sign_coherence(g, SIGN_UNITS))
            self._sums.add(layer.at + _SIGN_N, 1)
        if "weight_grad" in self._custom_of:
            self._add_custom(layer.at, "weight_grad", g)

    def before_optimizer_step(self) -> None:
        """The step's gradients are complete (``steps="manual"``): read each probed layer's weight
        gradient once, as the optimiser will see it. With gradient accumulation that is the sum over
        the step's micro-batches, so the weight-gradient norm and sign coherence are those of the
        accumulated gradient (the statistics of one pass over the whole batch), not of each backward."""
        if not self._grads_at_step or not self._active or not self._weight_grads:
            return
        for layer in self.layers:
            g = layer.layer.weight.grad
            if g is not None and layer.layer.weight.requires_grad:
                self._weight_grad_stats(layer, g)

    # --- reading ---

    def _close_window(self) -> list[dict]:
        """Read the buffers back (one transfer for the layer and function rows, one per attention or
        recurrent module), reset them, and keep the rows."""
        everything = [*self.layers, *self._call_rows.values()]
        if self.world > 1:
            self._reduce_over_ranks(everything)
        read = self._sums.read()  # one transfer for every row
        accs = {id(x): read[x.at:x.at + self._slots] for x in everything}
        rows = []
        for x in sorted(everything, key=lambda l: (l.order < 0, l.order)):
            if accs[id(x)][_N] == 0:
                continue
            acc = accs[id(x)]
            rows.append(self._row(x, acc, accs) if isinstance(x, _Layer) else self._call_row(x, acc))
            rows[-1]["_order"] = x.order
            for slot, c in (pair for pairs in self._custom_of.values() for pair in pairs):
                rows[-1][c.name] = acc[slot] / acc[slot + 1] if acc[slot + 1] else math.nan
        for i, row in enumerate(rows):  # the layer-to-layer gradient factor needs the next layer
            nxt = rows[i + 1]["act_grad_norm"] if i + 1 < len(rows) else math.nan
            row["grad_factor"] = row["act_grad_norm"] / nxt if nxt and math.isfinite(nxt) else math.nan
        placed = [(att.order, self._head_rows(att)) for att in [*self._attention, *self._sdpa.values()]
                  if att.acc is not None]
        placed += [(rec.order, self._recurrent_rows(rec)) for rec in self._recurrent if rec.gates is not None]
        for order, new in sorted(placed, key=lambda p: p[0]):  # each module's rows where it ran in the forward pass
            at = next((i for i, r in enumerate(rows) if r["_order"] > order), len(rows))
            rows[at:at] = [{**r, "_order": order} for r in new]
        dropped = [col for group, cols in stats.GROUPS.items() if group not in self.groups for col in cols]
        for row in rows:
            del row["_order"]
            for col in dropped:
                row.pop(col, None)
        self._sums.zero()
        for layer in everything:
            layer.hist.zero_()
            if layer.ever_active is not None:
                layer.ever_active.zero_()
        self._window_start = self.step + 1
        self._window_sampled = 0
        self._window_heavy = False
        self._rows.extend(rows)
        self._history.extend(rows)
        self._thin()
        return rows

    def _reduce_over_ranks(self, rows: list) -> None:
        """DistributedDataParallel: make every rank's sums those of the global batch, once per window
        (two collectives). Sums, counts and histograms add up; a unit is alive if it fired on any
        rank. Each rank's loss is the mean over its own batch and DDP averages the gradients, so the
        global batch's dL/dh is each rank's divided by the world size W: the gradient moments' sums
        are divided by W (first) and W^2 (second), and the step count, added W times, by W."""
        import torch.distributed as dist

        sums, w = self._sums, self.world
        sums.settle()
        n = len(sums.host)
        flat = torch.cat([sums.total + torch.tensor(sums.host, dtype=torch.float64, device=sums.device),
                          *[r.hist.to(torch.float64) for r in rows]])
        dist.all_reduce(flat)
        for r in rows:
            for slot in (_GZ, _GX, _GH):
                flat[r.at + slot] /= w
                flat[r.at + slot + 1] /= w * w
            flat[r.at + _N] /= w
        sums.total.copy_(flat[:n])
        sums.host = [0.0] * n
        at = n
        for r in rows:
            r.hist.copy_(flat[at:at + len(r.hist)])
            at += len(r.hist)
        masks = [r.ever_active for r in rows if r.ever_active is not None]
        if masks:
            alive = torch.cat([m.to(torch.uint8) for m in masks])
            dist.all_reduce(alive, op=dist.ReduceOp.MAX)
            at = 0
            for m in masks:
                m.copy_(alive[at:at + len(m)].bool())
                at += len(m)

    def _thin(self) -> None:
        """Keep at most ``keep_windows`` windows in memory: past the cap, every second window of the
        older half goes (the newest half stays whole), so a long run keeps its whole span at a
        coarser grain. ``thinned`` counts the windows gone, and a warning says so the first time."""
        unstored = sorted({r["last_step"] for r in self._rows})
        if len(unstored) > self.keep_windows:  # never flushed into a run: bounded the same way
            gone = set(unstored[:len(unstored) // 2][1::2])
            self._rows = [r for r in self._rows if r["last_step"] not in gone]
        ends = sorted({r["last_step"] for r in self._history})
        if len(ends) <= self.keep_windows:
            return
        older = ends[:len(ends) // 2]
        gone = set(older[1::2])
        self._history = [r for r in self._history if r["last_step"] not in gone]
        if not self.thinned:
            warnings.warn(f"probe history over keep_windows={self.keep_windows} windows: thinning the older "
                          "half (probe.thinned counts the windows gone; a run flushed into as it goes keeps "
                          "every window's statistics)", stacklevel=2)
        self.thinned += len(gone)

    def _head_rows(self, att: _Attention) -> list[dict]:
        """A row per head from the window's attention sums (one transfer), which start again empty."""
        heads = [{"layer": f"{att.name}:head{h['head']}", "type": "attention head", "activation": None,
                  "units": att.head_dim, "first_step": self._window_start, "last_step": self.step,
                  "sampled_steps": None, **{k: v for k, v in h.items() if k != "head"}}
                 for h in attention.rows(att.acc.tolist())]
        att.acc = None
        return heads

    def _recurrent_rows(self, rec: _Recurrent) -> list[dict]:
        """Per (layer, direction): a row for the hidden state (``time_grad``: RMS over the window's
        backward passes of ||dL_T/dh_t|| for t = 1..T, ``time_grad_ratio`` its first over its
        last) and a row per gate (its values' moments and saturated share); the sums start again empty."""
        module, mode = rec.module, recurrent.mode_of(rec.module)
        kind, gates = recurrent.KINDS[mode], recurrent.GATES[mode]
        gate_sums, state_sums = rec.gates.tolist(), rec.states.tolist()
        time = None
        if rec.time_sq is not None:
            time = (rec.time_sq / rec.time_n).sqrt().tolist()
        common = {"first_step": self._window_start, "last_step": self.step, "sampled_steps": rec.steps}
        out = []
        for k, suffix in enumerate(recurrent.row_names(module)):
            mean, var = stats.pooled_mean_var(state_sums[k])
            grads = time[k] if time is not None else None
            ratio = grads[0] / grads[-1] if grads and grads[-1] > 0 else math.nan
            row = rec.name if suffix is None else f"{rec.name}.{suffix}"
            out.append({"layer": row, "type": kind, "activation": None,
                        "units": getattr(module, "proj_size", 0) or module.hidden_size,
                        **common, "act_mean": mean, "act_std": math.sqrt(var), "time_grad": grads,
                        "time_grad_ratio": ratio, "act_grad_norm": grads[-1] if grads else math.nan})
            for g, (gate, fn) in enumerate(gates):
                s, s2, n, sat = gate_sums[k][g]
                mean, var = stats.pooled_mean_var((s, s2, n))
                out.append({"layer": f"{row}:{gate}", "type": f"{kind} gate", "activation": fn,
                            "units": module.hidden_size, **common, "act_mean": mean, "act_std": math.sqrt(var),
                            "saturated": sat / n if n else math.nan})
        rec.gates = rec.states = rec.time_sq = rec.time_n = None
        rec.steps = 0
        return out

    def _row(self, layer: _Layer, acc: list[float], accs: dict[int, list[float]]) -> dict:
        def mv(values: list[float], slot: int) -> tuple[float, float]:
            return stats.pooled_mean_var(values[slot:slot + 3])

        h_mean, h_var = mv(acc, _H)
        x_mean, x_var = mv(acc, _X)
        z_var = mv(acc, _Z)[1]
        gz_var = mv(acc, _GZ)[1]
        src = layer.gx_from
        gx_var = mv(acc, _GX)[1] if src is None else mv(accs[id(src)], src.h_grad_slot)[1]
        steps = self._steps(acc)
        walked = layer.layer
        dead = math.nan
        if walked.nonlinearity is not None:
            dead = 0.0
            if layer.ever_active is not None:
                dead = 1.0 - layer.ever_active.double().mean().item()
        ratio = lambda a, b: a / b if b > 0 else math.nan  # noqa: E731
        return {
            "layer": layer.name, "type": type(layer.module).__name__,
            "activation": walked.nonlinearity, "units": walked.units,
            "first_step": self._window_start, "last_step": self.step, "sampled_steps": int(steps),
            "act_mean": h_mean, "act_std": math.sqrt(h_var) if h_var == h_var else math.nan,
            "saturated": acc[_SAT] / acc[_SAT_N] if layer.saturated_region and acc[_SAT_N]
            else (0.0 if walked.nonlinearity else math.nan),
            "zero": 1 - acc[_NONZERO] / acc[_NONZERO_N] if acc[_NONZERO_N] else math.nan, "dead": dead,
            "input_mean_over_std": abs(x_mean) / math.sqrt(x_var) if x_var > 0 else math.nan,
            "in_mean": x_mean, "in_std": math.sqrt(x_var) if x_var == x_var else math.nan,
            "weight_grad_norm": math.sqrt(acc[_WG] / acc[_WG_N]) if acc[_WG_N] else math.nan,
            "act_grad_norm": math.sqrt(acc[layer.h_grad_slot + 1] / steps) if acc[layer.h_grad_slot + 2] else math.nan,
            "glorot_forward": ratio(z_var, x_var),
            "glorot_backward": ratio(gx_var, gz_var),
            "update_ratio": acc[_UPD] / acc[_UPD_N] if acc[_UPD_N] else math.nan,
            "sign_coherence": acc[_SIGN] / acc[_SIGN_N] if acc[_SIGN_N] else math.nan,
            "distinct_units": math.nan if "distinct_units" not in self.groups
            else stats.distinct_rows(walked.weight, walked.bias) if not isinstance(walked.module, Maxout)
            else stats.distinct_rows(walked.weight),
            "hist_lo": layer.hist_range[0], "hist_hi": layer.hist_range[1], "hist": layer.hist.tolist(),
        }

    # --- public reading ---

    def flush(self, run=None, step: int | None = None) -> list[dict]:
        """Close the current window (if it saw any step) and return its rows; with ``run`` (a
        ``store.Run``), also write every closed window not yet stored, as the tables ``probes``
        (long: step, layer, name, value) and ``histograms`` (step, layer, bin, lo, hi, count)."""
        rows = self._close_window() if self.step >= self._window_start else []
        if run is not None and self.rank == 0:  # DDP: every rank closes the window, rank 0 stores it
            self._write(run, self.step if step is None else step)
        elif self.rank != 0:
            self._rows = []
        return rows

    def summary(self):
        """The current window's rows as a pandas DataFrame, one row per probed layer in forward
        order (closes the window: the next one starts empty). Before any step, the last window's."""
        import pandas as pd

        rows = self.flush() or self._last_window()
        return pd.DataFrame(rows).drop(columns=["hist"], errors="ignore") if rows else pd.DataFrame()

    def history(self):
        """Every closed window since ``watch`` began, as one DataFrame (columns as ``summary``);
        past ``keep_windows`` windows, the older ones thinned (``thinned`` counts them)."""
        import pandas as pd

        return pd.DataFrame(self._history)

    def findings(self) -> list:
        """The findings (``findings.Finding``: kind, layers, message with its numbers, recommendation
        with its claim number) over every window so far; the current window is closed first."""
        from .findings import analyse

        self.flush()
        return analyse(self._history)

    def report(self, path):
        """Write a self-contained HTML page (findings, the last window's table, the modules not
        probed, and the probe figures embedded as PNG) to ``path``; the current window is closed first."""
        from pathlib import Path

        from ..store import write_atomic
        from .page import page

        found = self.findings()
        html = page(self._history, found, self.skipped, self.step)
        path = Path(path)
        write_atomic(path, lambda f: f.write(html.encode()))
        return path

    def _repr_html_(self) -> str:
        """A notebook shows a probe as its findings and its last closed window (nothing is closed)."""
        from .findings import analyse
        from .page import notebook

        return notebook(self._history, analyse(self._history), max(self.step - self._window_start + 1, 0))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(module name, why) for every module of the model that no row of the probe covers."""
        covered = {id(l.module) for l in self.layers} | {id(l.activation) for l in self.layers if l.activation is not None}
        covered |= {id(m) for _, m in self._norms} | {id(a.module) for a in self._attention}
        covered |= {id(r.module) for r in self._recurrent if not r.unmodelled}
        inside = {id(m) for l in self.layers if isinstance(l.module, Maxout) for m in l.module.modules()}
        out = []
        for name, module in self.model.named_modules():
            if id(module) in covered or id(module) in inside:
                continue
            why = next((f"{type(module).__name__}: {r.unmodelled}" for r in self._recurrent
                        if r.module is module and r.unmodelled), None)
            if why is None and self._filter is not None and isinstance(module, (*PARAMETRIC, *NORMS, nn.MultiheadAttention,
                                                                                 nn.RNNBase)):
                why = f"{type(module).__name__}: not chosen by layers={self._filter!r}"
            why = why or _why_skipped(module)
            if why is not None:
                out.append((name or type(module).__name__, why))
        return out

    def _last_window(self) -> list[dict]:
        if not self._history:
            return []
        last = self._history[-1]["last_step"]
        return [r for r in self._history if r["last_step"] == last]

    def _write(self, run, step: int) -> None:
        """The closed windows as long tables (pandas melt and explode): ``probes`` (step, layer, name,
        value), ``histograms`` (step, layer, bin, lo, hi, count), ``probe_layers`` (the text columns)
        and, for recurrent layers, ``time_gradients`` (step, layer, t, norm)."""
        import pandas as pd
        import pyarrow as pa

        if not self._rows:
            return
        rows = pd.DataFrame(self._rows).assign(step=lambda f: f["last_step"])
        numbers = [c for c in rows if c not in ("step", "hist_lo", "hist_hi") and pd.api.types.is_numeric_dtype(rows[c])
                   and not pd.api.types.is_bool_dtype(rows[c])]
        long = rows.melt(id_vars=["step", "layer"], value_vars=numbers, var_name="name").astype({"value": float})
        tables = [("probes", long)]
        if "hist" in rows:  # not when the histogram statistic is off
            hist = rows.loc[rows["hist"].map(lambda h: isinstance(h, list)), ["step", "layer", "hist", "hist_lo", "hist_hi"]]
            hist = hist.explode("hist", ignore_index=True)  # attention heads have no histogram
            hist["bin"] = hist.groupby(["step", "layer"], sort=False).cumcount()
            width = (hist["hist_hi"] - hist["hist_lo"]) / self.bins
            hist = hist.assign(lo=hist["hist_lo"] + hist["bin"] * width, hi=hist["hist_lo"] + (hist["bin"] + 1) * width,
                               count=hist["hist"].astype(float))[["step", "layer", "bin", "lo", "hi", "count"]]
            tables.append(("histograms", hist))
        text = rows[["step", "layer", "type", "activation"]].fillna({"activation": ""})
        tables.append(("probe_layers", text))
        if "time_grad" in rows:  # recurrent layers: ||dL_T/dh_t|| per time step
            time = rows.loc[rows["time_grad"].map(lambda g: isinstance(g, list)), ["step", "layer", "time_grad"]]
            time = time.explode("time_grad", ignore_index=True)
            time["t"] = time.groupby(["step", "layer"], sort=False).cumcount() + 1
            tables.append(("time_gradients", time.assign(norm=time["time_grad"].astype(float))[["step", "layer", "t", "norm"]]))
        for name, table in tables:
            run.append_table(name, step, pa.Table.from_pandas(table, preserve_index=False))
        self._rows = []
        if "hist" in rows:
            self._stored_hist_windows += rows["step"].nunique()
            if self._stored_hist_windows > self.keep_windows:  # the stored histograms thinned like the history
                if not self.thinned_stored:
                    warnings.warn(f"stored histograms over keep_windows={self.keep_windows} windows: thinning the "
                                  "older half in the run (probe.thinned_stored counts the windows gone; the "
                                  "per-layer statistics keep every window)", stacklevel=3)
                run.thin_table("histograms", self.keep_windows)
                gone = (self._stored_hist_windows // 2) // 2  # every second window of the older half
                self.thinned_stored += gone
                self._stored_hist_windows -= gone

    # --- the engine's observer protocol ---

    def after_backward(self, step: int) -> None:
        """Nothing to do: the hooks have already seen the step."""

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self._window_start = self.step + 1


def _ranks() -> tuple[int, int]:
    """(world size, rank) of torch.distributed's default group; (1, 0) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _max_over_ranks(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _why_skipped(module: nn.Module) -> str | None:
    """Why a module has no row of its own; None for a container whose parts are judged one by one."""
    from ..layers import activation_of

    kind = type(module).__name__
    if isinstance(module, nn.Embedding):
        return f"{kind}: a table lookup, not a layer with a nonlinearity"
    if activation_of(module) is not None:
        return f"{kind}: an activation that follows no probed layer"
    if any(True for _ in module.children()):
        return None
    if any(True for _ in module.parameters(recurse=False)):
        return f"{kind}: a module with weights of a type the probes do not know"
    return f"{kind}: no weights and no nonlinearity"


def watch(model: nn.Module, every: int = 1, *, layers: LayerFilter = None, bins: int = 50, update_every: int = 10,
          window: int | None = None, stats=None, exact: bool = False, keep_windows: int = 1000,
          steps: str = "forward") -> Probe:
    """Probe ``model``'s layers while the caller's own loop trains it; use as a context manager.

    ``every``: sample every k-th training step. ``layers``: a tuple of module types, a list of
    module names, or a predicate ``(name, module) -> bool`` choosing the probed modules (default:
    every Linear, Conv and Maxout). ``window``: close a window every that many steps (default:
    only when ``summary``/``flush`` is called). ``stats``: which statistics to compute (default: all),
    names from ``stats.GROUPS`` ("histogram", "saturation", "dead", "gradients", "glorot", "updates",
    "sign_coherence", "distinct_units") and ``stats.Statistic`` objects of the user's own; a probe
    asked for less does less work per step. ``exact``: count the shares (saturated, zero) on the
    whole batch and the histogram and sign coherence on every sampled step; by default the shares
    are counted on ``SHARE_ROWS`` evenly strided samples of each batch (``stats.sample_rows`` gives
    the error bound), and the histogram and sign coherence on the first sampled step of each window
    and every ``update_every``-th one. ``keep_windows``: the most windows ``history()`` keeps in
    memory before the older half is thinned (``probe.thinned`` counts what went), and the most
    histogram windows a run store written by ``flush(run)`` keeps, thinned the same way
    (``probe.thinned_stored``; the per-layer statistics keep every window). ``steps``: "forward"
    (each forward pass of ``model`` in training mode with gradients on is a step) or "manual" (the
    loop calls ``probe.begin_step()``, ``probe.before_optimizer_step()`` and
    ``probe.end_step()``). Leaving the ``with`` block removes every hook.

        >>> import torch, gradientflow as gf
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> with gf.watch(net) as probe:
        ...     net(torch.randn(16, 4)).sum().backward()
        >>> list(probe.summary()["layer"])
        ['0', '2']
    """
    return Probe(model, every=every, layers=layers, bins=bins, update_every=update_every, window=window,
                 stats=stats, exact=exact, keep_windows=keep_windows, steps=steps).attach()
