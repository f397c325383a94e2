"""The training loop: mini-batch steps, clipping, schedules, evaluation, NaN guard, checkpoint/resume.

``fit`` trains any ``nn.Module`` that maps a batch of inputs to class logits, with the
cross-entropy loss. It never builds models (that is ``model``'s job) and it never prints:
the caller gets a ``Summary``. Observers (the probes) see every step through two calls,
``after_backward(step)`` and ``flush(run, step)``, and may ask to be saved in checkpoints
through ``state_dict``/``load_state_dict``.

Reproducibility: epoch e's shuffle comes from a generator seeded with (seed, e), and the
checkpoint holds the model, optimiser, scheduler, RNG state and the running sums of the epoch,
so a run resumed from any checkpoint ends bit-identical (on the CPU) to one never interrupted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from . import optim, schedules
from .config import TrainConfig
from .data import Dataset
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


def fit(model: torch.nn.Module, data: Dataset, cfg: TrainConfig, *, run: Run | None = None,
        resume: bool = False, observers: tuple = (), progress: bool = False) -> Summary:
    """Train ``model`` on ``data`` as ``cfg`` says; log to and checkpoint in ``run`` if given.

    Each step: forward, cross-entropy, backward, clipping (``optim.clip_``), the NaN guard
    (loss and total gradient norm must be finite, else the run stops as *diverged* and
    ``locate_nonfinite`` names the layer), the optimiser step, the scheduler step. The test split
    is evaluated at the end of every epoch. With ``resume``, training continues from the run's
    latest checkpoint.
    """
    device = resolve_device(cfg.device)
    model.to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    n = len(y)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.make(cfg.optimizer, params, lr=cfg.lr, mu=cfg.momentum, rho=cfg.rho, delta=cfg.eps,
                     weight_decay=cfg.weight_decay)
    sched = schedules.make(cfg.schedule, opt, total_steps=total, step_size=cfg.step_size, gamma=cfg.gamma,
                           warmup_steps=cfg.warmup_steps)
    ckpt_every = cfg.checkpoint_every or per_epoch
    log = _Log(ckpt_every + 1, device)
    torch.manual_seed(cfg.seed)  # for modules that draw at run time (dropout)

    step = start_epoch = start_batch = 0
    acc = torch.zeros(3, dtype=torch.float64, device=device)  # epoch sums: loss * batch, correct, seen
    history: list[dict] = []
    if resume:
        if run is None or run.latest_checkpoint() is None:
            raise ValueError("nothing to resume: the run has no checkpoint yet")
        step, path = run.latest_checkpoint()
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, start_batch, history = state["epoch"], state["batch"], state["history"]
        acc = state["acc"].to(device)
        for obs, s in zip(observers, state.get("observers", [])):
            if hasattr(obs, "load_state_dict"):
                obs.load_state_dict(s)
        run.rewind(step)

    def checkpoint(epoch: int, batch: int) -> None:
        if run is None:
            return
        run.append_metrics(step, log.rows())
        for obs in observers:
            if hasattr(obs, "flush"):
                obs.flush(run, step)
        run.save_checkpoint(step, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "rng": torch.get_rng_state(), "epoch": epoch, "batch": batch, "history": history,
            "acc": acc.cpu(), "observers": [o.state_dict() if hasattr(o, "state_dict") else None for o in observers],
        })

    if run is not None:
        run.set_status("running", steps=step)
    bar = _progress_bar(total, step, progress)
    started = time.perf_counter()
    status, message = "finished", ""
    epoch, batch = start_epoch, start_batch
    model.train()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            order = epoch_order(n, cfg.seed, epoch).to(device)
            for batch in range(start_batch if epoch == start_epoch else 0, per_epoch):
                idx = order[batch * cfg.batch_size:(batch + 1) * cfg.batch_size]
                xb, yb = x[idx], y[idx]
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = optim.clip_(params, norm=cfg.clip_norm, value=cfg.clip_value)
                if not bool(torch.isfinite(loss) & torch.isfinite(gnorm)):
                    raise _Stop("diverged", f"non-finite values at step {step + 1}: "
                                            f"{locate_nonfinite(model, xb, yb)}")
                for obs in observers:
                    obs.after_backward(step + 1)
                lr = opt.param_groups[0]["lr"]
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                with torch.no_grad():
                    acc[0] += loss.detach() * len(yb)
                    acc[1] += (out.argmax(1) == yb).sum()
                    acc[2] += len(yb)
                log.step(step, epoch, loss, gnorm, lr)
                bar.update(1)
                if step % ckpt_every == 0 and batch + 1 < per_epoch:
                    checkpoint(epoch, batch + 1)
            loss_sum, correct, seen = acc.tolist()
            test_loss, test_acc = evaluate(model, x_test, y_test)
            row = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / seen,
                   "train_accuracy": correct / seen, "test_loss": test_loss, "test_accuracy": test_acc}
            history.append(row)
            for name in ("loss", "accuracy"):
                log.add(step, epoch, "train_epoch", name, row[f"train_{name}"])
                log.add(step, epoch, "test", name, row[f"test_{name}"])
            acc.zero_()
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", test_acc=f"{test_acc:.3f}", refresh=False)
            checkpoint(epoch + 1, 0)
    except _Stop as stop:
        status, message = stop.status, stop.message
    except KeyboardInterrupt:  # the last checkpoint stands; resuming rewinds to it
        last = run.latest_checkpoint() if run is not None else None
        status = "interrupted"
        message = f"interrupted at step {step}" + (f"; --resume continues from step {last[0]}" if last else "")
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    if status == "diverged" and run is not None and (log.steps or log.extra):
        run.append_metrics(step, log.rows())  # keep the steps up to the divergence
    last = history[-1] if history else {}
    summary = Summary(status=status, steps=step, epochs=step / per_epoch, seconds=seconds,
                      train_loss=last.get("train_loss", math.nan),
                      train_accuracy=last.get("train_accuracy", math.nan),
                      test_loss=last.get("test_loss", math.nan), test_accuracy=last.get("test_accuracy", math.nan),
                      run_dir=str(run.path) if run is not None else None, message=message, history=history)
    if run is not None:
        run.set_status(status, **{k: v for k, v in summary.to_dict().items() if k not in ("status", "history")})
    return summary


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
