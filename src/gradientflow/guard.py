"""The NaN guard: the steps' losses, logits and gradient norms kept as device tensors and read back
in one transfer now and then (``StepLog``), what a failed read means (``Rollback``: go back and
replay; ``Diverged``: stop), and ``locate_nonfinite``, which names the layer.

A read is the guard's only host synchronisation. The trainer reads once ``GUARD_EVERY`` steps are
pending (sooner for large logits), at each epoch's end and before each snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .evaluation import is_regression
from .evaluation import loss as loss_of
from .records import MetricRows

GUARD_EVERY = 256  # at most this many steps unread by the NaN guard
GUARD_ELEMENTS = 1 << 22  # ... or sooner, once the kept logits hold this many numbers


@dataclass(frozen=True)
class Rollback:
    """A read found a non-finite value at ``step`` (``what``: the loss or gradient, or the state):
    the trainer goes back to its last good snapshot and replays with a check at every step."""

    step: int
    what: str


@dataclass(frozen=True)
class Diverged:
    """Training cannot go on: ``message`` says at which step and where; ``module`` is the qualified name
    of the module it names, when it names one."""

    step: int
    message: str
    module: str | None = None


class Pending(NamedTuple):
    """One step as the guard keeps it until its next read: device tensors, no host value."""

    step: int
    epoch: int
    loss: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    grad_norm: torch.Tensor | None  # measured on this step (clipping, logging or a replay)
    logged: bool  # its gradient norm goes into the metric rows
    lr: float


class Readout(NamedTuple):
    """The pending steps as host numbers, all finite."""

    steps: list[int]
    epochs: list[int]
    losses: list[float]
    sizes: list[int]  # each step's batch size
    correct: int  # correct predictions over all of them (0 for real targets: a regression set)
    lrs: list[float]
    norms: list[tuple[int, int, float]]  # (step, epoch, gradient norm) of the logged steps

    def sums(self) -> tuple[float, int, int]:
        """(loss x batch size, correct predictions, samples) summed over the steps."""
        return sum(v * m for v, m in zip(self.losses, self.sizes)), self.correct, sum(self.sizes)

    def write(self, rows: MetricRows) -> None:
        """Each step's loss and rate, and the logged gradient norms, as metric rows."""
        n, shown = len(self.steps), self.norms
        rows.extend(self.steps + self.steps + [s for s, _, _ in shown], self.epochs + self.epochs + [e for _, e, _ in shown],
                    ["loss"] * n + ["lr"] * n + ["grad_norm"] * len(shown), self.losses + self.lrs + [v for _, _, v in shown])


def first_nonfinite(values: list[float]) -> int | None:
    """The index of the first value that is NaN or infinite, or None."""
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


class StepLog:
    """The steps not yet read back. ``add`` keeps a step's tensors as they are (no kernel runs);
    ``read`` does the arithmetic and the one transfer."""

    def __init__(self, last_step: int = 0):
        self.pending: list[Pending] = []
        self.last_step = last_step
        self.kept = 0  # numbers held in the pending logits

    def add(self, step: Pending) -> None:
        self.pending.append(step)
        self.last_step = step.step
        self.kept += step.logits.numel()

    @property
    def due(self) -> bool:
        return len(self.pending) >= GUARD_EVERY or self.kept > GUARD_ELEMENTS

    @torch.no_grad()
    def read(self, state_ok: torch.Tensor | None = None) -> Readout | Rollback:
        """Read the pending steps (and the device flag ``state_ok``) back in one transfer: a
        ``Rollback`` at the first step whose loss or gradient norm is not finite, or at the last step
        if ``state_ok`` is false; else their ``Readout``. Either way they are no longer pending."""
        pending, self.pending, self.kept = self.pending, [], 0
        measured = [p for p in pending if p.grad_norm is not None]
        parts = [torch.stack([p.loss for p in pending]).double()] if pending else []
        if measured:
            parts.append(torch.stack([p.grad_norm for p in measured]).double())
        counted = bool(pending) and not is_regression(pending[0].target)  # real targets: no correct predictions
        if counted:
            hits = torch.cat([p.logits for p in pending]).argmax(1).eq(torch.cat([p.target for p in pending]))
            parts.append(hits.sum().double().reshape(1))
        if state_ok is not None:
            parts.append(state_ok.double().reshape(1))
        values = torch.cat(parts).tolist() if parts else []
        n, k = len(pending), len(measured)
        losses, norm_values = values[:n], values[n:n + k]
        norm_at = {p.step: v for p, v in zip(measured, norm_values)}
        # a sum of finite float32 values is finite in float64; one non-finite term makes it non-finite
        bad = first_nonfinite([v + norm_at.get(p.step, 0.0) for p, v in zip(pending, losses)])
        if bad is not None:
            return Rollback(pending[bad].step, "loss or gradient")
        if state_ok is not None and not values[-1]:
            return Rollback(self.last_step, "parameters or optimiser state")
        return Readout(steps=[p.step for p in pending], epochs=[p.epoch for p in pending], losses=losses,
                       sizes=[p.target.shape[0] for p in pending],  # not len(t): a Python call, 4x slower
                       correct=int(values[n + k]) if counted else 0, lrs=[p.lr for p in pending],
                       norms=[(p.step, p.epoch, norm_at[p.step]) for p in measured if p.logged])


def locate_nonfinite(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """Where a step first went non-finite: re-run forward and backward on the same batch with hooks
    on every leaf module and report the first output (in forward order) or the first gradient
    w.r.t. an output (in backward order) holding NaN or Inf, else the first parameter gradient."""
    return where_nonfinite(model, x, y)[0]


def where_nonfinite(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[str, str | None]:
    """``locate_nonfinite``'s sentence and the qualified name of the module it names (None when it
    names none: the loss, the total norm, nothing)."""
    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    leaves = [m for m in model.modules() if not list(m.children())]
    order = {m: i for i, m in enumerate(leaves)}
    forward_bad: list[str] = []
    backward_bad: list[str] = []

    def label(m: torch.nn.Module) -> str:
        return f"layer {order[m]} ({type(m).__name__} '{names[m]}')"

    def on_forward(m, _inputs, out):
        if not isinstance(out, torch.Tensor):
            return
        if not forward_bad and not torch.isfinite(out).all():
            forward_bad.append(m)
        if out.requires_grad:
            out.register_hook(lambda g: backward_bad.append(m) if not backward_bad
                              and not torch.isfinite(g).all() else None)

    handles = [m.register_forward_hook(on_forward) for m in leaves]
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_of(model(x), y)
            if torch.isfinite(loss):
                loss.backward()
    finally:
        for h in handles:
            h.remove()
    if forward_bad:
        return f"forward output of {label(forward_bad[0])}", names[forward_bad[0]]
    if not torch.isfinite(loss):
        what = "squared error" if is_regression(y) else "cross-entropy"
        return f"the loss (the outputs are finite but the {what} is not)", None
    if backward_bad:
        return f"gradient w.r.t. the output of {label(backward_bad[0])}", names[backward_bad[0]]
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    for n, g in grads:
        if not torch.isfinite(g).all():
            return f"gradient of parameter '{n}'", n.rpartition(".")[0] or None
    if grads:
        name, big = max(((n, g.abs().max().item()) for n, g in grads), key=lambda t: t[1])
        if not math.isfinite(torch.nn.utils.get_total_norm([g for _, g in grads]).item()):
            return (f"the total gradient norm overflows (largest entry {big:.3g}, in '{name}'): exploding gradients",
                    None)
    return "nowhere on re-run (the non-finite value did not reproduce)", None
