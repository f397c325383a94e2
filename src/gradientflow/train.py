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


class LoopSpec(BaseModel):
    """How ``fit`` loops: epochs, mini-batch size, the seed of the shuffling, checkpoints and device."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(20, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    checkpoint_every: int | None = Field(None, ge=1)  # steps; None: at the end of every epoch
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
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(y), EVAL_BATCH):
        out = model(x[i:i + EVAL_BATCH])
        loss += F.cross_entropy(out, y[i:i + EVAL_BATCH], reduction="sum").double()
        correct += (out.argmax(1) == y[i:i + EVAL_BATCH]).sum()
    model.train(was_training)
    return loss.item() / len(y), correct.item() / len(y)


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


class _Log:
    """Per-step metrics kept on the device until a flush, so logging never waits on the device."""

    NAMES = ("loss", "grad_norm", "lr")

    def __init__(self, capacity: int, device: torch.device):
        self.values = torch.zeros(len(self.NAMES), capacity, dtype=torch.float64, device=device)
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self.extra: list[tuple[int, int, str, str, float]] = []

    def step(self, step: int, epoch: int, loss: torch.Tensor, grad_norm: torch.Tensor, lr: float) -> None:
        i = len(self.steps)
        if i == self.values.shape[1]:  # grow (rare: only when flushes are far apart)
            self.values = torch.cat([self.values, torch.zeros_like(self.values)], 1)
        self.values[0, i] = loss.detach()
        self.values[1, i] = grad_norm.detach()
        self.values[2, i] = lr
        self.steps.append(step)
        self.epochs.append(epoch)

    def add(self, step: int, epoch: int, split: str, name: str, value: float) -> None:
        self.extra.append((step, epoch, split, name, value))

    def rows(self) -> dict[str, list]:
        n = len(self.steps)
        values = self.values[:, :n].cpu().tolist()
        cols: dict[str, list] = {"step": [], "epoch": [], "split": [], "name": [], "value": []}
        for k, name in enumerate(self.NAMES):
            cols["step"] += self.steps
            cols["epoch"] += self.epochs
            cols["split"] += ["train"] * n
            cols["name"] += [name] * n
            cols["value"] += values[k]
        for row in self.extra:
            for col, v in zip(cols, row):
                cols[col].append(v)
        self.steps, self.epochs, self.extra = [], [], []
        return cols


class _Loop:
    """The state of one ``fit`` call: model, optimiser, scheduler, log, epoch sums and position."""

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
        self.log = _Log(self.ckpt_every + 1, self.device)
        self.step = self.epoch = self.batch = 0
        self.acc = torch.zeros(3, dtype=torch.float64, device=self.device)  # epoch sums: loss * batch, correct, seen
        self.history: list[dict] = []

    def restore(self) -> None:
        """Continue from the run's latest checkpoint; what was logged after it is dropped."""
        if self.run is None or self.run.latest_checkpoint() is None:
            raise ValueError("nothing to resume: the run has no checkpoint yet")
        self.step, path = self.run.latest_checkpoint()
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.batch, self.history = state["epoch"], state["batch"], state["history"]
        self.acc = state["acc"].to(self.device)
        for obs, saved in zip(self.observers, state.get("observers", [])):
            if saved is not None:
                obs.load_state_dict(saved)
        self.run.rewind(self.step)

    def checkpoint(self, epoch: int, batch: int) -> None:
        """Write the logged metrics, let the observers write theirs, and save the whole state."""
        if self.run is None:
            return
        self.run.append_metrics(self.step, self.log.rows())
        for obs in self.observers:
            obs.flush(self.run, self.step)
        self.run.save_checkpoint(self.step, {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "rng": torch.get_rng_state(), "epoch": epoch, "batch": batch, "history": self.history,
            "acc": self.acc.cpu(), "observers": [o.state_dict() for o in self.observers],
        })

    def train_step(self, epoch: int, idx: torch.Tensor) -> None:
        """Forward, cross-entropy, backward, clipping, the NaN guard, observers, optimiser and scheduler."""
        xb, yb = self.x[idx], self.y[idx]
        out = self.model(xb)
        loss = F.cross_entropy(out, yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = optim.clip_(self.params, norm=self.spec.clip_norm, value=self.spec.clip_value)
        if not bool(torch.isfinite(loss) & torch.isfinite(gnorm)):
            raise _Stop("diverged", f"non-finite values at step {self.step + 1}: "
                                    f"{locate_nonfinite(self.model, xb, yb)}")
        for obs in self.observers:
            obs.after_backward(self.step + 1)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.step += 1
        with torch.no_grad():
            self.acc[0] += loss.detach() * len(yb)
            self.acc[1] += (out.argmax(1) == yb).sum()
            self.acc[2] += len(yb)
        self.log.step(self.step, epoch, loss, gnorm, lr)

    def end_epoch(self, epoch: int) -> dict:
        """Evaluate the test split, log the epoch's means and checkpoint; the epoch's history row."""
        loss_sum, correct, seen = self.acc.tolist()
        test_loss, test_acc = evaluate(self.model, self.x_test, self.y_test)
        row = {"epoch": epoch + 1, "step": self.step, "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen, "test_loss": test_loss, "test_accuracy": test_acc}
        self.history.append(row)
        for name in ("loss", "accuracy"):
            self.log.add(self.step, epoch, "train_epoch", name, row[f"train_{name}"])
            self.log.add(self.step, epoch, "test", name, row[f"test_{name}"])
        self.acc.zero_()
        self.checkpoint(epoch + 1, 0)
        return row

    def train(self, bar) -> None:
        """Every remaining epoch, from the current position."""
        self.model.train()
        start_epoch, start_batch = self.epoch, self.batch
        for epoch in range(start_epoch, self.loop.epochs):
            order = epoch_order(len(self.y), self.loop.seed, epoch).to(self.device)
            for batch in range(start_batch if epoch == start_epoch else 0, self.per_epoch):
                self.train_step(epoch, order[batch * self.loop.batch_size:(batch + 1) * self.loop.batch_size])
                bar.update(1)
                if self.step % self.ckpt_every == 0 and batch + 1 < self.per_epoch:
                    self.checkpoint(epoch, batch + 1)
            row = self.end_epoch(epoch)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_accuracy']:.3f}", refresh=False)

    def summary(self, status: str, message: str, seconds: float) -> Summary:
        last = self.history[-1] if self.history else {}
        return Summary(status=status, steps=self.step, epochs=self.step / self.per_epoch, seconds=seconds,
                       train_loss=last.get("train_loss", math.nan),
                       train_accuracy=last.get("train_accuracy", math.nan),
                       test_loss=last.get("test_loss", math.nan), test_accuracy=last.get("test_accuracy", math.nan),
                       run_dir=str(self.run.path) if self.run is not None else None, message=message,
                       history=self.history)


def fit(model: torch.nn.Module, data: Dataset, optimizer: OptimizerSpec = OptimizerSpec(),
        loop: LoopSpec = LoopSpec(), *, run: Run | None = None, resume: bool = False,
        observers: tuple[Observer, ...] = (), progress: bool = False) -> Summary:
    """Train ``model`` on ``data`` with ``optimizer`` for as long as ``loop`` says; log to and
    checkpoint in ``run`` if given.

    Each step: forward, cross-entropy, backward, clipping (``optim.clip_``), the NaN guard
    (loss and total gradient norm must be finite, else the run stops as *diverged* and
    ``locate_nonfinite`` names the layer), the optimiser step, the scheduler step. The test split
    is evaluated at the end of every epoch. With ``resume``, training continues from the run's
    latest checkpoint. Modules that draw at run time (dropout) draw from torch's global generator
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
    with torch.random.fork_rng(devices=cuda):  # the caller's global RNG state is left as it was
        torch.manual_seed(loop.seed)
        if resume:
            state.restore()
        if run is not None:
            run.set_status("running", steps=state.step)
        try:
            state.train(bar)
        except _Stop as stop:
            status, message = stop.status, stop.message
        except KeyboardInterrupt:  # the last checkpoint stands; resuming rewinds to it
            last = run.latest_checkpoint() if run is not None else None
            status = "interrupted"
            message = f"interrupted at step {state.step}" + (f"; --resume continues from step {last[0]}" if last else "")
        finally:
            bar.close()
    seconds = time.perf_counter() - started
    if status == "diverged" and run is not None and (state.log.steps or state.log.extra):
        run.append_metrics(state.step, state.log.rows())  # keep the steps up to the divergence
    summary = state.summary(status, message, seconds)
    if run is not None:
        run.set_status(status, **{k: v for k, v in summary.to_dict().items() if k not in ("status", "history")})
    return summary


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
