"""The training loop: a ``Trainer`` driven over a whole run, checkpointed by the clock, resumable.

``fit(model, data, optimizer, loop)`` trains any ``nn.Module`` that maps a batch of inputs to
class logits, with the cross-entropy loss (or, on a regression set, to one output, with the squared
error: ``evaluation.loss``). It takes two small typed records: an
``optim.OptimizerSpec`` (what updates the weights) and a ``records.LoopSpec`` (epochs, batch size,
seed, checkpoints, device). It never builds models (that is ``model``'s job) and it never prints:
the caller gets a ``Summary``. Observers (the probes) see every step after the backward pass,
write to the run at each checkpoint and are saved in it.

Checkpoints go by the clock: at most one every ``CHECKPOINT_SECONDS`` of training (or one every
``loop.checkpoint_every`` steps when that is set), one at the end, and one when the process is asked
to stop (SIGINT, SIGTERM). The metric rows are written with each checkpoint, so memory stays bounded
at any batch size. A run killed outright (``kill -9``) loses at most the stretch since its last
checkpoint: resuming rewinds to it.

Reproducibility: epoch e's shuffle comes from a generator seeded with (seed, e), and the
checkpoint holds the model, optimiser, scheduler, RNG state and the running sums of the epoch,
so a run resumed from any checkpoint ends bit-identical (on the CPU) to one never interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import torch

from .data import Dataset
from .evaluation import EVAL_BATCH, evaluate  # noqa: F401  (re-exported: the engine's evaluation)
from .guard import Diverged, Rollback, locate_nonfinite  # noqa: F401  (re-exported)
from .optim import OptimizerSpec
from .records import LoopSpec, Observer, Summary
from .store import Run
from .trainer import Trainer, epoch_order, resolve_device  # noqa: F401  (re-exported)

__all__ = ["fit", "Summary", "LoopSpec", "Observer", "Trainer", "evaluate", "epoch_order", "locate_nonfinite"]

CHECKPOINT_SECONDS = 30.0  # by default, at most one checkpoint (and metric part) per this much training


class _Stops:
    """SIGINT and SIGTERM, caught while a stored run trains: the loop finishes its step, checkpoints
    and ends as interrupted. The first signal puts the previous handlers back, so a second one acts
    at once (Ctrl-C twice). Signals reach only the main thread: elsewhere nothing is installed."""

    def __init__(self):
        self.caught: int | None = None
        self.previous: dict = {}

    def _on_signal(self, signum, _frame) -> None:
        self.caught = signum
        self.restore()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    @contextlib.contextmanager
    def installed(self, enabled: bool):
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        try:
            yield self
        finally:
            self.restore()


class _Loop:
    """One ``fit`` call: the trainer, when to checkpoint, and what a checkpoint writes."""

    def __init__(self, trainer: Trainer, run: Run | None, loop: LoopSpec, stops: _Stops):
        self.trainer, self.run, self.loop, self.stops = trainer, run, loop, stops
        self.next_clock = time.monotonic() + CHECKPOINT_SECONDS
        self.saved_at = -1  # the step of the run's newest checkpoint

    def due(self) -> bool:
        """A checkpoint (or, without a store, a new rollback point) is due after this step."""
        every = self.loop.checkpoint_every
        if every is not None:
            return self.trainer.step % every == 0
        return time.monotonic() >= self.next_clock

    def checkpoint(self) -> Rollback | None:
        """Check, take the snapshot (the new rollback point) and hand it, the metric rows and the
        observers' gatherings to the store; once per step (a part is named by its step)."""
        t = self.trainer
        back = t.mark()
        if back is not None:
            return back
        self.next_clock = time.monotonic() + CHECKPOINT_SECONDS
        if self.run is not None and t.step != self.saved_at:
            self.run.append_metrics(t.step, t.rows.take())
            for obs in t.observers:
                obs.flush(self.run, t.step)
            self.run.save_checkpoint(t.step, t.good)
            self.saved_at = t.step
        return None

    def run_to_end(self, bar) -> tuple[str, str]:
        """Every remaining step, then the last checkpoint; (status, message) at the end, at a
        divergence or at a stop signal."""
        t = self.trainer
        t.model.train()
        t.good = t.snapshot()
        while True:
            if t.done or self.stops.caught:
                outcome = self.checkpoint()
                if outcome is None and t.done:
                    return "finished", ""
                if outcome is None:
                    name = signal.Signals(self.stops.caught).name
                    return "interrupted", f"stopped by {name} at step {t.step}; --resume continues from step {t.step}"
            else:
                outcome = t.advance()
                bar.update(1)
                if outcome is None and self.due():
                    outcome = self.checkpoint()
            if isinstance(outcome, Rollback):
                outcome = t.rollback(outcome)
                bar.n = t.step
            if isinstance(outcome, Diverged):
                return "diverged", outcome.message

    def restore(self) -> None:
        """Continue from the run's latest checkpoint; what was logged after it is dropped. A run killed
        before its first checkpoint starts again from step 0 (the fresh model is the same one)."""
        if self.run is None:
            raise ValueError("nothing to resume: no run store")
        if self.run.latest_checkpoint() is None:
            self.run.rewind(0)
            return
        step, state = self.run.last_good_checkpoint(self.trainer.device, fits=self.trainer.misfit)
        self.trainer.load(state, step)
        self.run.rewind(step)
        self.saved_at = step


def fit(model: torch.nn.Module, data: Dataset, optimizer: OptimizerSpec = OptimizerSpec(),
        loop: LoopSpec = LoopSpec(), *, run: Run | None = None, resume: bool = False,
        observers: tuple[Observer, ...] = (), progress: bool = False) -> Summary:
    """Train ``model`` on ``data`` with ``optimizer`` for as long as ``loop`` says; log to and
    checkpoint in ``run`` if given.

    Each step (``Trainer.train_step``): forward, the loss, backward, clipping (``optim.clip_``),
    the optimiser step, the scheduler step. The NaN guard (loss and total gradient norm must be
    finite, else the run stops as *diverged* at that step and ``locate_nonfinite`` names the layer)
    reads the device at least every ``GUARD_EVERY`` steps and replays from the last snapshot when it
    finds a non-finite value. The metrics log the loss and rate of every step and the gradient norm
    every ``loop.grad_norm_every`` steps; the run's files are written in the background
    (``Run.background``). The test split is evaluated at the end of every epoch. With ``resume``,
    training continues from the run's latest checkpoint. Modules that draw at run time (dropout) draw
    from torch's global generator seeded with ``loop.seed`` inside ``torch.random.fork_rng``: the
    caller's RNG state is restored.

        >>> import gradientflow as gf
        >>> d = gf.data.load("xor", n_train=200, n_test=100)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        >>> gf.fit(net, d, gf.OptimizerSpec(lr=0.01), gf.LoopSpec(epochs=2, batch_size=50)).steps
        8
    """
    trainer = Trainer(model, data, optimizer, loop, keep_rows=run is not None, observers=observers)
    stops = _Stops()
    state = _Loop(trainer, run, loop, stops)
    cuda = [trainer.device] if trainer.device.type == "cuda" else []
    started = time.perf_counter()
    status, message = "finished", ""
    with torch.random.fork_rng(devices=cuda), (run.writing() if run is not None else contextlib.nullcontext()):
        _seed(loop.seed, trainer.device)  # above: the caller's RNG state is left as it was; one writer per run
        if resume:
            state.restore()
        bar = _progress_bar(trainer.total, trainer.step, progress)
        with run.background() if run is not None else contextlib.nullcontext(), stops.installed(run is not None):
            if run is not None:
                run.set_status("running", steps=trainer.step)
            try:
                status, message = state.run_to_end(bar)
            except KeyboardInterrupt:  # raised inside a step (no handler installed): the last checkpoint stands
                status = "interrupted"
            finally:
                bar.close()
            if status == "diverged" and run is not None:
                trainer.check()  # the steps before the divergence, each checked already
                if len(trainer.rows):
                    run.append_metrics(trainer.step, trainer.rows.take())  # keep the steps up to the divergence
        if status == "interrupted" and not message:
            last = run.latest_checkpoint() if run is not None else None  # every write has landed by now
            message = f"interrupted at step {trainer.step}" + (f"; --resume continues from step {last[0]}" if last else "")
        summary = Summary.from_history(status, trainer.step, trainer.per_epoch, time.perf_counter() - started,
                                       trainer.history, str(run.path) if run is not None else None, message)
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
