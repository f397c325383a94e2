"""One model training on one dataset, a step at a time: the engine's step, guard and evaluation.

``Trainer.advance()`` takes the next mini-batch of the epoch's order and runs forward, the loss
(cross-entropy, or the squared error on a regression set: ``evaluation.loss``), backward,
clipping, the observers, the optimiser and the scheduler; at an epoch's end it evaluates the test
split. What it returns is a value, not an exception: None, a ``Rollback``
(the NaN guard saw a non-finite value: call ``rollback``) or ``Diverged`` (stop). ``train.fit``
drives it for a whole run with checkpoints; the lab drives it from its play, pause and step controls.

The NaN guard costs no per-step synchronisation: the step log is read once ``GUARD_EVERY`` steps
are unread, at each epoch's end and before each snapshot. When it sees a non-finite value, the
trainer goes back to its last good snapshot and replays the steps with a check after each backward
pass, which stops at exactly the step, and names exactly the layer, that a check at every step would.
"""

from __future__ import annotations

import math

import torch

from . import optim
from .data import Dataset
from .evaluation import epoch_row, evaluate, is_regression, loss
from .guard import Diverged, Pending, Rollback, StepLog, where_nonfinite
from .optim import OptimizerSpec
from .records import LoopSpec, MetricRows, Observer
from .snapshot import clone, misfit

GATHER_BYTES = 32 << 20  # the most training rows copied out at once, in the epoch's order (``Trainer.batches``)


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


class Trainer:
    """The state of one training: model, optimiser, scheduler, step log, epoch sums and position
    (``step`` counted from 1 once done; ``epoch`` and ``batch`` of the next step). With
    ``keep_rows``, ``rows`` gathers the metric rows (each step's loss and rate, the gradient norm
    every ``loop.grad_norm_every`` steps, each epoch's means) until someone ``take``s them."""

    def __init__(self, model: torch.nn.Module, data: Dataset, optimizer: OptimizerSpec = OptimizerSpec(),
                 loop: LoopSpec = LoopSpec(), *, keep_rows: bool = False, observers: tuple[Observer, ...] = ()):
        self.device = resolve_device(loop.device)
        self.model, self.spec, self.loop, self.observers = model.to(self.device), optimizer, loop, observers
        self.x, self.y = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_test, self.y_test = data.x_test.to(self.device), data.y_test.to(self.device)
        self.per_epoch = math.ceil(len(self.y) / loop.batch_size)
        self.total = self.per_epoch * loop.epochs
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = optim.build(optimizer, self.params)
        self.sched = optim.schedule(optimizer, self.opt, self.total)
        self.clipping = optimizer.clip_norm is not None or optimizer.clip_value is not None
        self.rows = MetricRows() if keep_rows else None
        self.log = StepLog()
        self.sums = [0.0, 0, 0]  # this epoch's summed loss x batch size, correct predictions, samples
        self.step = self.epoch = self.batch = 0
        self.history: list[dict] = []
        self.strict_until = 0  # steps up to this one are checked one by one (a replay after a rollback)
        self.good: dict = {}  # the last snapshot known to be finite
        self._batches = None  # the current epoch's remaining batches

    @property
    def done(self) -> bool:
        return self.step >= self.total

    # --- snapshots ---

    def snapshot(self) -> dict:
        """A copy of the whole state (model, optimiser, scheduler, RNG, position, epoch sums, observers):
        a checkpoint's content and the rollback point. Copied, so that training can go on at once."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": clone(self.opt.state_dict()),
            "scheduler": clone(self.sched.state_dict()) if self.sched is not None else None,
            "rng": torch.get_rng_state(), "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "history": clone(self.history), "acc": torch.tensor(self.sums, dtype=torch.float64),
            "observers": clone([o.state_dict() for o in self.observers]),
        }

    def load(self, state: dict, step: int) -> None:
        """Put the trainer back into a snapshot's (or a checkpoint's) state at ``step``; unread steps are dropped."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(clone(state["optimizer"]))  # the optimiser keeps the tensors it is given
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step, self.epoch, self.batch, self.history = step, state["epoch"], state["batch"], clone(state["history"])
        self.sums = state["acc"].tolist()
        self.log = StepLog(last_step=step)
        if self.rows is not None:  # rows since the snapshot: the replay logs them again
            self.rows = MetricRows()
        self._batches = None
        for obs, saved in zip(self.observers, state.get("observers", [])):
            if saved is not None:
                obs.load_state_dict(clone(saved))

    def misfit(self, state: dict, step: int) -> str | None:
        """Why a stored checkpoint cannot continue this trainer (``snapshot.misfit``), or None."""
        return misfit(state, step, self)

    def mark(self) -> Rollback | None:
        """Check the state (``check(state=True)``) and take the snapshot that is the new rollback point."""
        back = self.check(state=True)
        if back is None:
            self.good = self.snapshot()
        return back

    # --- the guard ---

    @torch.no_grad()
    def check(self, state: bool = False) -> Rollback | None:
        """The NaN guard's look at the steps since its last one, in one host synchronisation: every loss
        and measured gradient norm finite; with ``state`` (before a snapshot) also the parameters'
        total norm and every optimiser state entry. A non-finite gradient leaves its mark in the next
        loss or in the state, so the replay that follows a failed check finds its step. The steps
        read go into the epoch sums and the metric rows."""
        ok = None
        if state:
            ok = torch.ones((), dtype=torch.bool, device=self.device)
            if self.params:  # the 2-norm overflows where the gradient norm of the step that made them did
                ok &= torch.isfinite(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.params))))
            kept = [t for s in self.opt.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.numel()]
            if kept:
                ok &= torch.isfinite(torch.stack(torch._foreach_norm(kept, float("inf")))).all()
        read = self.log.read(ok)
        if isinstance(read, Rollback):
            return read
        loss_sum, correct, seen = read.sums()
        self.sums = [self.sums[0] + loss_sum, self.sums[1] + correct, self.sums[2] + seen]
        if self.rows is not None:
            read.write(self.rows)
        return None

    def rollback(self, back: Rollback) -> Diverged | None:
        """Return to the last good snapshot, to replay up to ``back.step`` with a check at every step;
        ``Diverged`` when that replay already ran and found nothing."""
        start = self.good["step"]
        if back.step <= self.strict_until:  # the replay checked every step up to here and found nothing
            why = ("every loss and gradient up to it was finite (the optimiser's update overflowed)"
                   if back.what.startswith("parameters") else
                   f"a replay from step {start} with a check at every step did not reproduce it")
            return Diverged(back.step, f"non-finite {back.what} at step {back.step}: {why}")
        self.load(self.good, start)
        self.strict_until = back.step
        return None

    # --- steps ---

    def advance(self) -> Rollback | Diverged | None:
        """One step on the epoch's next batch; at the epoch's end, also ``end_epoch``."""
        if self._batches is None:
            order = epoch_order(len(self.y), self.loop.seed, self.epoch).to(self.device)
            self._batches = self.batches(order, self.batch)
        _, xb, yb = next(self._batches)
        outcome = self.train_step(xb, yb)
        if outcome is not None:
            return outcome
        self.batch += 1
        return self.end_epoch() if self.batch == self.per_epoch else None

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> Rollback | Diverged | None:
        """Forward, the loss (``evaluation.loss``), backward, clipping, observers, optimiser and scheduler on the batch
        (``xb``, ``yb``). The gradient norm is computed only when clipping by norm or logging it; the
        one-by-one NaN check only in a replay."""
        out = self.model(xb)
        value = loss(out, yb)
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        step = self.step + 1
        strict = step <= self.strict_until
        logged = self.rows is not None and (step - 1) % self.loop.grad_norm_every == 0
        gnorm = None
        if strict or logged or self.clipping:
            gnorm = optim.clip_(self.params, norm=self.spec.clip_norm, value=self.spec.clip_value, measure=strict or logged)
        if strict and not bool(torch.isfinite(value) & torch.isfinite(gnorm)):
            where, module = where_nonfinite(self.model, xb, yb)
            return Diverged(step, f"non-finite values at step {step}: {where}", module)
        for obs in self.observers:
            obs.after_backward(step)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.step = step
        self.log.add(Pending(step, self.epoch, value.detach(), out.detach(), yb, gnorm, logged, lr))  # not their graphs
        return self.check() if self.log.due else None

    def end_epoch(self) -> Rollback | None:
        """Read the guard, evaluate the test split and keep the epoch's history row (and metric rows)."""
        back = self.check()
        if back is not None:
            return back
        row = epoch_row(self.epoch + 1, self.step, tuple(self.sums), evaluate(self.model, self.x_test, self.y_test),
                        regression=is_regression(self.y))
        self.history.append(row)
        if self.rows is not None:
            self.rows.add_epoch(row, self.epoch)
        self.sums = [0.0, 0, 0]
        self.epoch, self.batch, self._batches = self.epoch + 1, 0, None
        return None

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
            skip = max(start, first) - start  # a resumed run's first block starts part-way
            views = zip(self.x[rows].split(size)[skip:], self.y[rows].split(size)[skip:])  # views, made in one call
            for batch, (xb, yb) in enumerate(views, start + skip):
                yield batch, xb, yb
