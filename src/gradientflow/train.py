"""The training loop: mini-batch steps, clipping, schedules, evaluation, NaN guard, checkpoint/resume.

``fit(model, data, optimizer, loop)`` trains any ``nn.Module`` that maps a batch of inputs to
class logits, with the cross-entropy loss. It takes two small typed records: an
``optim.OptimizerSpec`` (what updates the weights) and a ``LoopSpec`` (epochs, batch size, seed,
checkpoints, device). It never builds models (that is ``model``'s job) and it never prints: the
caller gets a ``Summary``. Observers (the probes) implement the ``Observer`` protocol: they see
every step after the backward pass, write to the run at each checkpoint and are saved in it.

Reproducibility: epoch e's shuffle comes from a generator seeded with (seed, e), and the
checkpoint holds the model, optimiser, scheduler, RNG state and the running sums of the epoch,
so a run resumed from any checkpoint ends bit-identical (on the CPU) to one never interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import optim
from .data import Dataset
from .optim import OptimizerSpec
from .store import Run

EVAL_BATCH = 8192


@dataclass
class Summary:
    """The outcome of ``fit``: ``status`` is finished, diverged or interrupted."""

    status: str
    steps: int
    epochs: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    run_dir: str | None = None
    message: str = ""
    history: list[dict] = field(default_factory=list, repr=False)  # one row per epoch

    def to_dict(self) -> dict:
        return asdict(self)

    def stored(self) -> dict:
        """What a run's status.json keeps beside the status: every field but the status and the history."""
        return {k: v for k, v in self.to_dict().items() if k not in ("status", "history")}

    @classmethod
    def from_history(cls, status: str, steps: int, per_epoch: int, seconds: float, history: list[dict],
                     run_dir: str | None = None, message: str = "") -> "Summary":
        """The summary of a run at ``steps`` whose last epoch row (if any) holds its final numbers."""
        last = history[-1] if history else {}
        return cls(status=status, steps=steps, epochs=steps / per_epoch, seconds=seconds,
                   train_loss=last.get("train_loss", math.nan), train_accuracy=last.get("train_accuracy", math.nan),
                   test_loss=last.get("test_loss", math.nan), test_accuracy=last.get("test_accuracy", math.nan),
                   run_dir=run_dir, message=message, history=history)


class LoopSpec(BaseModel):
    """How ``fit`` loops: epochs, mini-batch size, the seed of the shuffling, checkpoints, how often
    the total gradient norm is logged (it costs a pass over every gradient) and the device."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(20, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    checkpoint_every: int | None = Field(None, ge=1)  # steps; None: at the end of every epoch
    grad_norm_every: int = Field(50, ge=1, le=1_000_000)  # steps between logged gradient norms (steps 1, 1+k, ...)
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda", "auto") and not v.startswith("cuda:"):
            raise ValueError("unknown device; expected cpu, cuda, cuda:N or auto")
        return v


class Observer(Protocol):
    """What ``fit`` calls on each observer (a probe). Subclass it to inherit the no-op defaults."""

    def after_backward(self, step: int) -> None:
        """Step ``step`` (counted from 1) has its gradients; the optimiser has not stepped yet."""

    def flush(self, run: Run | None, step: int) -> None:
        """A checkpoint at ``step``: write what was gathered into ``run``."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the observer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned, on resume."""


class _Stop(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA device is available; use cpu or auto")
    return device


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: a permutation from a generator seeded by (seed, epoch) alone."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split, in batches."""
    was_training = model.training
    model.eval()
    sums = []  # (loss, correct) per batch, read back in one transfer
    for i in range(0, len(y), EVAL_BATCH):
        out, target = model(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]
        sums.append(torch.stack([F.cross_entropy(out, target, reduction="sum").double(),
                                 (out.argmax(1) == target).sum().double()]))
    model.train(was_training)
    loss, correct = torch.stack(sums).sum(0).tolist()
    return loss / len(y), correct / len(y)


def locate_nonfinite(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """Where a step first went non-finite: re-run forward and backward on the same batch with hooks
    on every leaf module and report the first output (in forward order) or the first gradient
    w.r.t. an output (in backward order) holding NaN or Inf, else the first parameter gradient."""
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
            forward_bad.append(label(m))
        if out.requires_grad:
            out.register_hook(lambda g: backward_bad.append(label(m)) if not backward_bad
                              and not torch.isfinite(g).all() else None)

    handles = [m.register_forward_hook(on_forward) for m in leaves]
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y)
            if torch.isfinite(loss):
                loss.backward()
    finally:
        for h in handles:
            h.remove()
    if forward_bad:
        return f"forward output of {forward_bad[0]}"
    if not torch.isfinite(loss):
        return "the loss (the logits are finite but the cross-entropy is not)"
    if backward_bad:
        return f"gradient w.r.t. the output of {backward_bad[0]}"
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    for n, g in grads:
        if not torch.isfinite(g).all():
            return f"gradient of parameter '{n}'"
    if grads:
        name, big = max(((n, g.abs().max().item()) for n, g in grads), key=lambda t: t[1])
        if not math.isfinite(torch.nn.utils.get_total_norm([g for _, g in grads]).item()):
            return f"the total gradient norm overflows (largest entry {big:.3g}, in '{name}'): exploding gradients"
    return "nowhere on re-run (the non-finite value did not reproduce)"


GUARD_EVERY = 256  # at most this many steps unread by the NaN guard: its only host synchronisation
GUARD_ELEMENTS = 1 << 22  # ... or sooner, once the kept logits hold this many numbers
FLUSH_SECONDS = 60.0  # a stored run checkpoints (and so writes its metric rows) at least this often
GATHER_BYTES = 32 << 20  # the most training rows copied out at once, in the epoch's order (``_Loop.batches``)


class _Log:
    """The steps' losses, logits and gradient norms, kept as device tensors and read back in one
    transfer once ``GUARD_EVERY`` steps are pending (sooner for large logits) and at each checkpoint. The NaN
    guard looks at them there; the epoch's running sums and (with ``keep_rows``) the metric rows
    are made from them."""

    def __init__(self, keep_rows: bool, sums: tuple[float, float, float] = (0.0, 0, 0), last_step: int = 0):
        self.keep_rows = keep_rows
        self.pending: list[tuple] = []  # (step, epoch, loss, logits, target, grad_norm | None, logged, lr)
        self.last_step = last_step
        self.kept = 0  # numbers held in the pending logits
        self.sums = list(sums)  # this epoch's sum of loss x batch size, correct predictions, samples
        self.cols: dict[str, list] = {"step": [], "epoch": [], "split": [], "name": [], "value": []}

    def step(self, step: int, epoch: int, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
             grad_norm: torch.Tensor | None, logged: bool, lr: float) -> None:
        """Keep the step's tensors as they are (no kernel runs here; ``read`` does the arithmetic)."""
        self.pending.append((step, epoch, loss, logits, target, grad_norm, logged, lr))
        self.last_step = step
        self.kept += logits.numel()

    @torch.no_grad()
    def read(self, state_ok: torch.Tensor | None = None) -> tuple[int, str] | None:
        """Read the pending steps (and the device flag ``state_ok``) back in one transfer. Returns the
        first step whose loss or gradient norm is not finite, or else the last step if ``state_ok`` is
        false, with what was found; nothing is kept then (a rollback replays those steps). Else None,
        and the steps' sums and rows are kept."""
        pending, self.pending, self.kept = self.pending, [], 0
        if not pending and state_ok is None:
            return None
        columns = [list(c) for c in zip(*pending)] if pending else [[] for _ in range(8)]
        steps, epochs, losses, logits, targets, norms, logged, lrs = columns
        measured = [i for i, g in enumerate(norms) if g is not None]
        parts = []
        if pending:
            parts += [torch.stack(losses), torch.stack([norms[i] for i in measured]) if measured else None,
                      torch.cat(logits).argmax(1).eq(torch.cat(targets)).sum().reshape(1)]
        parts.append(state_ok.reshape(1) if state_ok is not None else None)
        values = torch.cat([t.double() for t in parts if t is not None]).tolist()
        n, k = len(pending), len(measured)
        loss_values, norm_values = values[:n], values[n:n + k]
        norm_at = dict(zip(measured, norm_values))  # step index -> its measured gradient norm
        if not all(map(math.isfinite, loss_values + norm_values)):
            first = next(i for i in range(n) if not math.isfinite(loss_values[i]) or not math.isfinite(norm_at.get(i, 0.0)))
            return steps[first], "loss or gradient"
        if state_ok is not None and not values[-1]:
            return self.last_step, "parameters or optimiser state"
        if pending:
            sizes = [t.shape[0] for t in targets]  # not len(t): Tensor.__len__ is a Python call, 4x slower
            self.sums[0] += sum(v * m for v, m in zip(loss_values, sizes))
            self.sums[1] += int(values[n + k])
            self.sums[2] += sum(sizes)
        if self.keep_rows and pending:
            shown = [i for i in measured if logged[i]]
            self._extend(steps + steps + [steps[i] for i in shown], epochs + epochs + [epochs[i] for i in shown],
                         ["loss"] * n + ["lr"] * n + ["grad_norm"] * len(shown),
                         loss_values + lrs + [norm_at[i] for i in shown])
        return None

    def _extend(self, steps: list, epochs: list, names: list, values: list, split: str = "train") -> None:
        for col, column in zip(self.cols.values(), (steps, epochs, [split] * len(steps), names, values)):
            col.extend(column)

    def add(self, step: int, epoch: int, split: str, name: str, value: float) -> None:
        self._extend([step], [epoch], [name], [value], split)

    def rows(self) -> dict[str, list]:
        """The rows read back so far (columns of ``store.METRIC_SCHEMA``); the log starts empty again."""
        cols, self.cols = self.cols, {k: [] for k in self.cols}
        return cols


def _clone(obj):
    """A copy of a state dict: nested dicts, lists and tuples rebuilt and tensors cloned, the rest
    (numbers, strings) shared; anything else deep-copied. Much faster than ``copy.deepcopy``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_clone(v) for v in obj)
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    return copy.deepcopy(obj)


def _described(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def _optimizer_misfit(saved, opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> str | None:
    """Why an optimiser state dict cannot be loaded into ``opt`` (over ``params``), or None: its groups
    or their sizes differ, or a per-parameter buffer (momentum, second moments) has another shape."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or not isinstance(saved.get("param_groups"), list):
        return "its optimiser state is not one"
    sizes = [len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else None
             for g in saved["param_groups"]]
    if sizes != [len(g["params"]) for g in opt.param_groups]:
        return "its optimiser has other parameter groups"
    for index, buffers in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(buffers, dict):
            return "its optimiser state names parameters this model does not have"
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                return f"its optimiser's {name} for parameter {index} is {tuple(value.shape)}, not {tuple(params[index].shape)}"
    return None


class _Rollback(Exception):
    """The guard saw a non-finite value at ``step`` (``what``: the loss or gradient, or the state)."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at step {step}")
        self.step, self.what = step, what


class _Loop:
    """The state of one ``fit`` call: model, optimiser, scheduler, log, epoch sums and position.

    The NaN guard costs no per-step synchronisation: the log is checked once ``GUARD_EVERY``
    steps are unread, and the log and the state at checkpoints (``check``). When it sees a non-finite value,
    training goes back to the last good snapshot (taken at every checkpoint and at the start) and
    replays the steps with a check after each backward pass, which stops at exactly the step, and
    names exactly the layer, that a check at every step would have.
    """

    def __init__(self, model: torch.nn.Module, data: Dataset, optimizer: OptimizerSpec, loop: LoopSpec,
                 run: Run | None, observers: tuple[Observer, ...]):
        self.device = resolve_device(loop.device)
        self.model, self.spec, self.loop, self.run, self.observers = model.to(self.device), optimizer, loop, run, observers
        self.x, self.y = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_test, self.y_test = data.x_test.to(self.device), data.y_test.to(self.device)
        self.per_epoch = math.ceil(len(self.y) / loop.batch_size)
        self.total = self.per_epoch * loop.epochs
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = optim.build(optimizer, self.params)
        self.sched = optim.schedule(optimizer, self.opt, self.total)
        self.ckpt_every = loop.checkpoint_every or self.per_epoch
        self.clipping = optimizer.clip_norm is not None or optimizer.clip_value is not None
        self.log = _Log(keep_rows=run is not None)
        self.step = self.epoch = self.batch = 0
        self.history: list[dict] = []
        self.strict_until = 0  # steps up to this one are checked one by one (a replay after a rollback)
        self.good: dict = {}  # the last snapshot known to be finite
        self.flush_by = math.inf  # the next checkpoint by the clock (set at each snapshot)

    def snapshot(self, epoch: int, batch: int) -> dict:
        """A copy of the whole state (model, optimiser, scheduler, RNG, position, epoch sums, observers):
        the checkpoint's content and the rollback point. Copied, so that training can go on at once."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _clone(self.opt.state_dict()),
            "scheduler": _clone(self.sched.state_dict()) if self.sched is not None else None,
            "rng": torch.get_rng_state(), "epoch": epoch, "batch": batch, "step": self.step,
            "history": _clone(self.history), "acc": torch.tensor(self.log.sums, dtype=torch.float64),
            "observers": _clone([o.state_dict() for o in self.observers]),
        }

    def load(self, state: dict, step: int) -> None:
        """Put the loop back into a snapshot's (or a checkpoint's) state at ``step``."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(_clone(state["optimizer"]))  # the optimiser keeps the tensors it is given
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step, self.epoch, self.batch, self.history = step, state["epoch"], state["batch"], _clone(state["history"])
        self.log = _Log(keep_rows=self.run is not None, sums=tuple(state["acc"].tolist()), last_step=step)
        for obs, saved in zip(self.observers, state.get("observers", [])):
            if saved is not None:
                obs.load_state_dict(_clone(saved))

    def misfit(self, state: dict, step: int) -> str | None:
        """Why a checkpoint's ``state`` (stored as step ``step``) cannot continue this loop, or None:
        its model or optimiser state has other names or shapes, or its position, RNG state, history
        or epoch sums are not what this loop writes. A checkpoint from another run, or one edited
        by hand, is refused here instead of failing inside ``load`` or later in training."""
        own = self.model.state_dict()
        saved = state["model"]
        if not isinstance(saved, dict) or set(saved) != set(own):
            return "its model has other parameters than this run's"
        for name, value in own.items():
            got = saved[name]
            if not isinstance(got, torch.Tensor) or got.shape != value.shape or got.dtype != value.dtype:
                return f"its {name} is {_described(got)}, this model's is {_described(value)}"
        epoch, batch, at = state["epoch"], state["batch"], state.get("step", step)
        if not all(type(v) is int for v in (epoch, batch, at)) or not 0 <= batch < self.per_epoch \
                or epoch < 0 or not epoch * self.per_epoch + batch == at == step:
            return f"its position (epoch, batch, step) = {(epoch, batch, at)!r} is not step {step} of this run"
        rng = state.get("rng")
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
            return "its random generator state is not one"
        history = state.get("history")
        if not isinstance(history, list) or len(history) != state["epoch"] or not all(isinstance(r, dict) for r in history):
            return "its history is not one row per finished epoch"
        acc = state.get("acc")
        if not isinstance(acc, torch.Tensor) or acc.numel() != 3:
            return "its epoch sums are not three numbers"
        return _optimizer_misfit(state["optimizer"], self.opt, self.params) or (
            "its scheduler state does not match the config" if (state.get("scheduler") is None) != (self.sched is None) else None)

    def restore(self) -> None:
        """Continue from the run's latest checkpoint; what was logged after it is dropped. A run killed
        before its first checkpoint starts again from step 0 (the fresh model is the same one)."""
        if self.run is None:
            raise ValueError("nothing to resume: no run store")
        if self.run.latest_checkpoint() is None:
            self.run.rewind(0)
            return
        step, state = self.run.last_good_checkpoint(self.device, fits=self.misfit)
        self.load(state, step)
        self.run.rewind(step)

    @torch.no_grad()
    def check(self, state: bool = False) -> None:
        """The NaN guard's look at the steps since its last one, in one host synchronisation: every loss
        and measured gradient norm finite; with ``state`` (before a snapshot) also the parameters'
        total norm and every optimiser state entry. A non-finite gradient leaves its mark in the next
        loss or in the state, so the replay that follows a failed check finds its step."""
        ok = None
        if state:
            ok = torch.ones((), dtype=torch.bool, device=self.device)
            if self.params:  # the 2-norm overflows where the gradient norm of the step that made them did
                ok &= torch.isfinite(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.params))))
            kept = [t for s in self.opt.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.numel()]
            if kept:
                ok &= torch.isfinite(torch.stack(torch._foreach_norm(kept, float("inf")))).all()
        bad = self.log.read(ok)
        if bad is not None:
            raise _Rollback(*bad)

    def rollback(self, back: _Rollback) -> None:
        """Return to the last good snapshot and replay up to ``back.step`` with a check at every step."""
        start = self.good["step"]
        if back.step <= self.strict_until:  # the replay checked every step up to here and found nothing
            why = ("every loss and gradient up to it was finite (the optimiser's update overflowed)"
                   if back.what.startswith("parameters") else
                   f"a replay from step {start} with a check at every step did not reproduce it")
            raise _Stop("diverged", f"non-finite {back.what} at step {back.step}: {why}")
        self.load(self.good, start)
        self.strict_until = back.step

    def save(self, epoch: int, batch: int, checked: bool = False) -> None:
        """Check (unless just ``checked``), take the snapshot (the new rollback point) and hand it and the
        rows to the store."""
        if not checked:
            self.check(state=True)
        self.good = self.snapshot(epoch, batch)
        self.flush_by = time.monotonic() + FLUSH_SECONDS  # long epochs (batch size 1) still write their rows
        if self.run is None:
            return
        self.run.append_metrics(self.step, self.log.rows())
        for obs in self.observers:
            obs.flush(self.run, self.step)
        self.run.save_checkpoint(self.step, self.good)

    def train_step(self, epoch: int, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Forward, cross-entropy, backward, clipping, observers, optimiser and scheduler on the batch
        (``xb``, ``yb``). The gradient norm is computed only when clipping by norm or logging it; the
        one-by-one NaN check only in a replay."""
        out = self.model(xb)
        loss = F.cross_entropy(out, yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        step = self.step + 1
        strict = step <= self.strict_until
        logged = self.log.keep_rows and (step - 1) % self.loop.grad_norm_every == 0
        gnorm = None
        if strict or logged or self.clipping:
            gnorm = optim.clip_(self.params, norm=self.spec.clip_norm, value=self.spec.clip_value, measure=strict or logged)
        if strict and not bool(torch.isfinite(loss) & torch.isfinite(gnorm)):
            raise _Stop("diverged", f"non-finite values at step {step}: {locate_nonfinite(self.model, xb, yb)}")
        for obs in self.observers:
            obs.after_backward(step)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.step = step
        self.log.step(step, epoch, loss.detach(), out.detach(), yb, gnorm, logged, lr)  # not their graphs
        if len(self.log.pending) >= GUARD_EVERY or self.log.kept > GUARD_ELEMENTS:  # counted from the last read
            self.check()

    def end_epoch(self, epoch: int) -> dict:
        """Evaluate the test split, log the epoch's means and checkpoint; the epoch's history row."""
        self.check(state=True)
        loss_sum, correct, seen = self.log.sums
        test_loss, test_acc = evaluate(self.model, self.x_test, self.y_test)
        row = {"epoch": epoch + 1, "step": self.step, "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen, "test_loss": test_loss, "test_accuracy": test_acc}
        self.history.append(row)
        for name in ("loss", "accuracy"):
            self.log.add(self.step, epoch, "train_epoch", name, row[f"train_{name}"])
            self.log.add(self.step, epoch, "test", name, row[f"test_{name}"])
        self.log.sums = [0.0, 0, 0]
        self.save(epoch + 1, 0, checked=True)
        return row

    def batches(self, order: torch.Tensor, first: int):
        """(batch, inputs, targets) for the epoch's batches from ``first`` on, in ``order``. The rows are
        gathered a block of batches at a time (at most ``GATHER_BYTES``), so that a step slices a view
        instead of indexing twice: the same rows in the same order, fewer small operations per step.
        Blocks start at multiples of their length whatever ``first`` is, so a batch has the same place
        in its block (the same memory alignment, which a BLAS may round by) in a resumed run."""
        size = self.loop.batch_size
        row_bytes = self.x[:1].nbytes + self.y[:1].nbytes
        block = max(1, GATHER_BYTES // max(1, row_bytes * size))  # batches per gather
        for start in range(first - first % block, self.per_epoch, block):
            rows = order[start * size:(start + block) * size]
            xs, ys = self.x[rows], self.y[rows]
            for batch in range(max(start, first), min(start + block, self.per_epoch)):
                at = (batch - start) * size
                yield batch, xs[at:at + size], ys[at:at + size]

    def epochs(self, bar) -> None:
        """Every remaining epoch, from the current position."""
        start_epoch, start_batch = self.epoch, self.batch
        for epoch in range(start_epoch, self.loop.epochs):
            order = epoch_order(len(self.y), self.loop.seed, epoch).to(self.device)
            for batch, xb, yb in self.batches(order, start_batch if epoch == start_epoch else 0):
                self.train_step(epoch, xb, yb)
                bar.update(1)
                due = self.step % self.ckpt_every == 0 or (self.run is not None and time.monotonic() > self.flush_by)
                if due and batch + 1 < self.per_epoch:
                    self.save(epoch, batch + 1)
            row = self.end_epoch(epoch)
            if not bar.disable:
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_accuracy']:.3f}", refresh=False)

    def train(self, bar) -> None:
        """Every remaining epoch; after a rollback, again from the snapshot."""
        self.model.train()
        self.good = self.snapshot(self.epoch, self.batch)
        self.flush_by = time.monotonic() + FLUSH_SECONDS
        while True:
            try:
                return self.epochs(bar)
            except _Rollback as back:
                self.rollback(back)
                bar.n = self.step

    def summary(self, status: str, message: str, seconds: float) -> Summary:
        return Summary.from_history(status, self.step, self.per_epoch, seconds, self.history,
                                    str(self.run.path) if self.run is not None else None, message)


def fit(model: torch.nn.Module, data: Dataset, optimizer: OptimizerSpec = OptimizerSpec(),
        loop: LoopSpec = LoopSpec(), *, run: Run | None = None, resume: bool = False,
        observers: tuple[Observer, ...] = (), progress: bool = False) -> Summary:
    """Train ``model`` on ``data`` with ``optimizer`` for as long as ``loop`` says; log to and
    checkpoint in ``run`` if given.

    Each step: forward, cross-entropy, backward, clipping (``optim.clip_``), the optimiser step,
    the scheduler step. The NaN guard (loss and total gradient norm must be finite, else the run
    stops as *diverged* at that step and ``locate_nonfinite`` names the layer) reads the device
    at least every ``GUARD_EVERY`` steps and replays from the last snapshot when it finds a non-finite
    value (``_Loop``). The metrics log the loss and rate of every step and the gradient norm every
    ``loop.grad_norm_every`` steps; the run's files are written in the background
    (``Run.background``). The test split is evaluated at the end of every epoch. With ``resume``,
    training continues from the run's latest checkpoint. Modules that draw at run time (dropout) draw from torch's global generator
    seeded with ``loop.seed`` inside ``torch.random.fork_rng``: the caller's RNG state is restored.

        >>> import gradientflow as gf
        >>> d = gf.data.load("xor", n_train=200, n_test=100)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        >>> gf.fit(net, d, gf.OptimizerSpec(lr=0.01), gf.LoopSpec(epochs=2, batch_size=50)).steps
        8
    """
    state = _Loop(model, data, optimizer, loop, run, observers)
    cuda = [state.device] if state.device.type == "cuda" else []
    bar = _progress_bar(state.total, state.step, progress)
    started = time.perf_counter()
    status, message = "finished", ""
    with torch.random.fork_rng(devices=cuda), (run.writing() if run is not None else contextlib.nullcontext()):
        _seed(loop.seed, state.device)  # above: the caller's RNG state is left as it was; one writer per run
        if resume:
            state.restore()
        with run.background() if run is not None else contextlib.nullcontext():  # writes off the step's path
            if run is not None:
                run.set_status("running", steps=state.step)
            try:
                state.train(bar)
            except _Stop as stop:
                status, message = stop.status, stop.message
                state.log.read()  # the steps before the divergence, each checked already
                if run is not None and state.log.cols["step"]:
                    run.append_metrics(state.step, state.log.rows())  # keep the steps up to the divergence
            except KeyboardInterrupt:  # the last checkpoint stands; resuming rewinds to it
                status = "interrupted"
            finally:
                bar.close()
        if status == "interrupted":
            last = run.latest_checkpoint() if run is not None else None  # every write has landed by now
            message = f"interrupted at step {state.step}" + (f"; --resume continues from step {last[0]}" if last else "")
        summary = state.summary(status, message, time.perf_counter() - started)
        if run is not None:
            run.set_status(status, **summary.stored())
    return summary


def _seed(seed: int, device: torch.device) -> None:
    """Seed the generators this run draws from: the CPU's and, on a GPU, that device's. Not
    ``torch.manual_seed``, which also seeds every other GPU (whose state ``fork_rng`` does not restore)
    and, before CUDA starts, records a stack trace for its deferred call (96 µs against 2 µs here)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
