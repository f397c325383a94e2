"""``watch(model)``: per-layer diagnostics of any ``nn.Module`` while it trains, from hooks.

The rows are of six kinds (``rows``): layers (what ``layers.walk`` finds: a parametric module,
Linear, Conv1d/2d/3d or Maxout, with the activation that consumes its output, found by data flow),
embedding tables, nonlinearities called as functions, normalisation layers, attention heads and
recurrent gates; ``layers=`` chooses the modules by type, by name or by a predicate. On sampled steps each
kind's taps hand the model's tensors to its rows, whose statistics (``builtin``: one record each)
add into state kept on the model's device: nothing is read back until a window closes
(``flush``/``summary``, or every ``window`` steps), and memory is O(rows x bins) whatever the
number of steps. When to measure is ``schedule.Schedule``; the reduction across ranks ``ranks``.

A *step* is one forward pass of the watched model in training mode with gradients enabled, or,
once a torch optimiser over its weights is seen to step after several of them (gradient
accumulation), all the forwards between two optimiser steps (``steps``); evaluation passes
(``model.eval()`` or ``torch.no_grad()``) are not counted. Every ``every``-th step is sampled
(the first step always).

The columns of ``summary()`` and what each statistic measures: ``builtin`` (layer and activation
rows), ``attention`` (heads) and ``recurrent`` (gates and gradients through time).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..layers import LayerFilter
from . import builtin, ranks
from .builtin import HIST_SAMPLE, SHARE_ROWS, SIGN_UNITS  # noqa: F401 - the sampling sizes, documented above
from .functional import Calls
from .history import History
from .rows import Window, assemble
from .rows.calls import FunctionCalls
from .rows.gates import Gates
from .rows.heads import Heads
from .rows.layers import Layers
from .rows.norms import Norms
from .rows.tables import Tables
from .rows.weights import Weights
from .schedule import Schedule
from .skipped import skipped
from .state import Context, eager
from .steps import Steps
from .stats import choose as choose_stats  # (the parameter ``stats`` shadows the module)
from .sums import Sums


class Probe:
    """Hooks on a model's layers and the on-device state they fill. Use ``watch()``."""

    def __init__(self, model: nn.Module, *, every: int = 1, layers: LayerFilter = None, bins: int = 50,
                 update_every: int = 10, window: int | None = None, stats=None, exact: bool = False,
                 keep_windows: int = 1000, steps: str = "forward"):
        _check(steps, every, bins, update_every, window, keep_windows)
        self.model, self.every, self.bins, self.update_every, self.window = model, every, bins, update_every, window
        self.manual = steps == "manual"
        self.world, self.rank = ranks.ranks()
        self.groups, self.custom = choose_stats(stats)
        self.schedule = Schedule(every, update_every, window, exact, "updates" in self.groups)
        self._history = History(keep_windows)
        self._calls = Calls(self._on_call, self._on_sdpa, self._on_weights)
        ctx = self._ctx = Context(Sums(_device(model)), bins, exact, ranks.all_reduce if self.world > 1 else None,
                                  self._calls.paused)
        # the weight gradient read once per optimiser step: the accumulated (manual) or the
        # all-reduced (DistributedDataParallel) one, as the optimiser sees it
        self._weights = Weights(ctx, grads_at_step=self.manual or self.world > 1)
        activation_stats = builtin.chosen(builtin.ACTIVATION, self.groups, self.custom)
        self._layers = Layers(model, layers, ctx, builtin.chosen(builtin.LAYER, self.groups, self.custom), self.custom,
                              self._weights, activation_stats)
        self._tables = Tables(model, layers, ctx, self._weights, self.groups)
        self._functions = FunctionCalls(model, layers, ctx, activation_stats, self.custom)
        self._norms = Norms(model, layers, ctx, activation_stats, self.custom)
        self._heads = Heads(model, layers, ctx, self._functions.chooses)
        self._gates = Gates(model, layers, ctx)
        self._kinds = (self._layers, self._tables, self._functions, self._norms, self._heads, self._gates)
        if not (self._layers.found or self._tables.found or self._norms.modules or self._heads.modules
                or self._gates.found):
            if layers is not None:
                raise ValueError(f"no layers to probe: layers={layers!r} matches no layer, embedding, normalisation, "
                                 "attention or recurrent module")
            raise ValueError("nothing to probe: the model has no Linear/Conv/Maxout module matching the filter, no "
                             "embedding, normalisation, attention or recurrent layer")
        self._filter = layers
        self.step = 0
        self._sampled = 0  # sampled steps so far
        self._window_sampled = 0  # ... in the open window
        self._window_heavy = False  # the open window has had a heavy step
        self._window_start = 1
        self._update_pending = False  # the weights were copied: this step measures the update
        self._steps = Steps(model, self._read_grads_at_step, self.before_optimizer_step)  # steps="forward"
        self._look = True  # look for functional calls on sampled steps (turned off when the first finds none)
        self._looked = False
        self._handles: list = []  # the step hooks, for as long as the probe is attached
        self._step_handles: list = []  # the taps, while steps are sampled

    @property
    def layers(self) -> list:
        """The walked layers (``layers.Layer``) that have rows."""
        return [row.layer for row in self._layers.found]

    @property
    def keep_windows(self) -> int:
        return self._history.keep_windows

    @property
    def thinned(self) -> int:
        """Windows thinned out of ``history()``."""
        return self._history.thinned

    @property
    def thinned_stored(self) -> int:
        """Histogram windows thinned out of the run store (``flush(run)``)."""
        return self._history.thinned_stored

    # --- attach / detach ---

    def attach(self) -> "Probe":
        if not self.manual:
            self._handles.append(self.model.register_forward_pre_hook(eager(self._on_step)))
        self._handles.append(self.model.register_forward_hook(eager(self._on_forward_end), always_call=True))
        if not self.manual:
            self._steps.watch(self._handles.append)
        return self

    def begin_step(self) -> None:
        """A training step starts (``steps="manual"``): whatever runs until ``end_step``, however
        many forward and backward passes of whichever submodules, counts as one step. For loops
        where the watched module's own forward is not called once per step (a Lightning module
        whose ``training_step`` calls ``self.net``; several micro-batches per optimiser step). Call
        ``before_optimizer_step()`` when the step's gradients are complete: the weight-gradient
        statistics are read there, once per step. The step is the caller's word: it counts even when
        the model is still in eval mode from an evaluation loop (a trainer calls ``train()`` later).
        """
        self._on_step(self.model, ())

    def end_step(self) -> None:
        """The step begun by ``begin_step`` has ended: nothing is measured until the next one begins
        (a validation or evaluation loop run between steps is not seen)."""
        self._layers.end_forward()
        self._stop_looking()
        self._ctx.active = False

    def before_optimizer_step(self) -> None:
        """The step's gradients are complete (``steps="manual"``): read each probed layer's weight
        gradient once, as the optimiser will see it. With gradient accumulation that is the sum over
        the step's micro-batches, so the weight-gradient norm and sign coherence are those of the
        accumulated gradient (the statistics of one pass over the whole batch), not of each backward."""
        if self._weights.grads_at_step and self._ctx.active:
            self._weights.grads()

    def detach(self) -> None:
        self._calls.stop()
        self._uninstall()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._layers.last = None

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def _uninstall(self) -> None:
        for h in self._step_handles:
            h.remove()
        self._step_handles.clear()

    # --- the step ---

    def _on_step(self, module, inputs) -> None:
        """A step starts: follow the schedule's plan. The taps are installed while steps are sampled and
        go at the first step that is not (a step the probe does not sample runs only the two step hooks)."""
        ctx = self._ctx
        if not self.manual and not (module.training and torch.is_grad_enabled()):  # an evaluation pass
            ctx.active = False
            return
        if not self.manual and not self._steps.starts_step(first=not self.step):  # another micro-batch
            if ctx.active and self._look:
                self._calls.start(self.model)
            return
        plan = self.schedule.plan(self.step, self._sampled, self._window_heavy, self.step >= self._window_start)
        if plan.close:
            self._close_window()
        self.step += 1
        ctx.active = plan.measure
        if plan.measure and not self._step_handles:
            for kind in self._kinds:
                kind.install(self._step_handles.append)
            self._weights.install(self._step_handles.append)
        elif not plan.measure and self._step_handles:
            self._uninstall()
        ctx.sums.settle()  # the last step's values, in one go
        ctx.sums.step = self.step
        if plan.measure:
            self._window_sampled += 1
            self._sampled += 1
            ctx.heavy = plan.heavy
            self._window_heavy |= plan.heavy
        self._weights.step(plan, self._update_pending)
        self._layers.step()
        self._update_pending = plan.snapshot
        if plan.measure and self._look:  # functional activations: sampled steps only
            self._calls.start(self.model)

    def _read_grads_at_step(self) -> None:
        """Micro-batches were seen: from now on each weight gradient is read once, accumulated, before
        the optimiser's update (``before_optimizer_step``)."""
        self._weights.grads_at_step = True

    def _on_forward_end(self, module, inputs, output) -> None:
        """The watched model's forward has ended (with ``steps="manual"``, one forward of the step)."""
        self._layers.end_forward()
        if not self.manual:
            self._stop_looking()

    def _stop_looking(self) -> None:
        """Leave the function mode at the end of a step's forward (a manual step's end)."""
        if self._calls.active:
            self._calls.stop()
            if not self._looked:  # none found at the first look: never look again
                self._looked, self._look = True, bool(self._functions.state() or self._heads.calls)

    def _on_call(self, name, function, record, z, h) -> None:
        self._functions.seen(name, function, record, z, h)

    def _on_sdpa(self, name: str, args: tuple, kwargs: dict) -> None:
        self._heads.seen(name, args, kwargs)

    def _on_weights(self, name: str, logits) -> None:
        self._heads.weighed(name, logits)

    def _close_window(self) -> list[dict]:
        """Read every row's state back (one transfer for the scalars, one per tensor state), reduced
        across ranks first, build the rows in forward order, reset the state and keep the rows."""
        ctx, state = self._ctx, [row for kind in self._kinds for row in kind.state()]
        if self.world > 1:
            ranks.reduce(state, ctx.sums, self.world, ctx.collective)
        host, first_bad = ctx.sums.read(), ctx.sums.read_first_bad()
        for row in state:
            row.read(host, first_bad)
        rows = assemble(self._kinds, Window(self._window_start, self.step, self._window_sampled,
                                            self.manual or self._steps.accumulating),
                        self.groups)
        ctx.sums.zero()
        for row in state:
            row.zero()
        self._window_start, self._window_sampled, self._window_heavy = self.step + 1, 0, False
        self._history.add(rows)
        return rows

    # --- public reading ---

    def flush(self, run=None, step: int | None = None) -> list[dict]:
        """Close the current window (if it saw any step) and return its rows; with ``run`` (a
        ``store.Run``), also write every closed window not yet stored, as the tables ``probes``
        (long: step, layer, name, value) and ``histograms`` (step, layer, bin, lo, hi, count)."""
        rows = self._close_window() if self.step >= self._window_start else []
        if run is not None and self.rank == 0:  # DDP: every rank closes the window, rank 0 stores it
            self._history.write(run, self.step if step is None else step, self.bins)
        elif self.rank != 0:
            self._history.unstored = []
        return rows

    def summary(self):
        """The current window's rows as a pandas DataFrame, one row per probed layer in forward
        order (closes the window: the next one starts empty). Before any step, the last window's."""
        import pandas as pd

        rows = self.flush() or self._history.last_window()
        return pd.DataFrame(rows).drop(columns=["hist"], errors="ignore") if rows else pd.DataFrame()

    def history(self):
        """Every closed window since ``watch`` began, as one DataFrame (columns as ``summary``);
        past ``keep_windows`` windows, the older ones thinned (``thinned`` counts them)."""
        import pandas as pd

        return pd.DataFrame(self._history.rows)

    def findings(self) -> list:
        """The findings (``findings.Finding``: kind, layers, message with its numbers, recommendation
        with its claim number) over every window so far; the current window is closed first."""
        from .findings import analyse

        self.flush()
        return analyse(self._history.rows)

    def report(self, path):
        """Write a self-contained HTML page (findings, the last window's table, the modules not
        probed, and the probe figures embedded as PNG) to ``path``; the current window is closed first."""
        from ..store import write_atomic
        from .page import page

        found = self.findings()
        html = page(self._history.rows, found, self.skipped, self.step)
        path = Path(path)
        write_atomic(path, lambda f: f.write(html.encode()))
        return path

    def _repr_html_(self) -> str:
        """A notebook shows a probe as its findings and its last closed window (nothing is closed)."""
        from .findings import analyse
        from .page import notebook

        return notebook(self._history.rows, analyse(self._history.rows), max(self.step - self._window_start + 1, 0))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(module name, why) for every module of the model that no row of the probe covers."""
        covers: dict = {}
        for kind in self._kinds:
            covers.update(kind.covers())
        return skipped(self.model, covers, self._filter)

    # --- the engine's observer protocol ---

    def after_backward(self, step: int) -> None:
        """Nothing to do: the hooks have already seen the step."""

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self._window_start = self.step + 1


def _device(model: nn.Module) -> torch.device:
    """Where the model's state lives (its first parameter's or buffer's device), where the sums go."""
    first = next(model.parameters(), None)
    first = first if first is not None else next(model.buffers(), None)
    return first.device if first is not None else torch.device("cpu")


def _check(steps, every, bins, update_every, window, keep_windows) -> None:
    if steps not in ("forward", "manual"):
        raise ValueError(f"steps={steps!r} must be 'forward' (each training forward pass of the model is a "
                         "step) or 'manual' (begin_step() and end_step() mark them)")
    for name, v, lo in (("every", every, 1), ("bins", bins, 2), ("update_every", update_every, 1),
                        ("keep_windows", keep_windows, 2)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window={window!r} must be None or an integer >= 1")
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
