"""A PyTorch Lightning callback that watches the ``LightningModule`` while the ``Trainer`` trains it.

    from gradientflow.integrations.lightning import GradientflowCallback
    trainer = lightning.Trainer(callbacks=[GradientflowCallback(out="runs/mine", every=10)])

Every ``every``-th training batch is measured by the probes (``probes.watch`` with the steps marked
by the callback, so a ``training_step`` that calls ``self.net(x)`` is seen as well as one that calls
``self(x)``). At each training epoch's end the callback closes the probes' window and

- stores it in a gradientflow run at ``out`` (``gradientflow inspect OUT`` and ``gradientflow runs``
  read it; written by the global rank 0 only);
- logs the main per-layer scalars (``gradientflow/<layer>/<statistic>``: activation std, saturated
  and dead shares, weight-gradient norm, update/weight ratio) through the trainer's own loggers;
- logs each finding (kind, layers, message, recommendation) with Lightning's ``rank_zero_info``.

Needs ``pip install 'gradientflow[lightning]'``; the base package never imports Lightning.
"""

from __future__ import annotations

import contextlib
import os

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.utilities import rank_zero_info
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("gradientflow.integrations.lightning needs Lightning: pip install 'gradientflow[lightning]'") from err

from ..probes import watch
from ..store import Run

LOGGED = ("act_std", "saturated", "dead", "weight_grad_norm", "update_ratio")


class GradientflowCallback(Callback):
    """Probe the module every ``every`` training batches; ``layers``: names or globs of the modules to
    watch (default: every layer the probes know); ``out``: the gradientflow run folder (new or
    empty; None keeps the statistics in memory only, in ``self.probe``); ``stats``: as ``watch``'s."""

    def __init__(self, out: str | os.PathLike | None = None, *, every: int = 10, layers=None, stats=None,
                 log_scalars: bool = True):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an integer >= 1")
        self.out, self.every, self.layers, self.stats, self.log_scalars = out, every, layers, stats, log_scalars
        self.probe = None
        self.run: Run | None = None
        self.findings: list = []
        self._writing = contextlib.ExitStack()
        self._in_step = self._stepped = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.probe = watch(pl_module, every=self.every, layers=self.layers, stats=self.stats, steps="manual")
        if self.out is not None and trainer.is_global_zero:
            self.run = Run.create(self.out, {"integration": "lightning", "model": type(pl_module).__name__,
                                             "probe_every": self.every, "layers": self.layers,
                                             "max_epochs": trainer.max_epochs})
            self._writing.enter_context(self.run.background())  # the run's files written off the training thread
            self.run.set_status("running", steps=0)

    # one probe step per optimiser step: with accumulate_grad_batches=k it spans k batches
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._in_step:
            self.probe.begin_step()
            self._in_step, self._stepped = True, False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.probe.before_optimizer_step()  # the accumulated gradient, once per optimiser step
        self._stepped = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._stepped:
            self.probe.end_step()
            self._in_step = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        rows = self.probe.flush(self.run, step)
        if self.log_scalars and rows:
            scalars = {f"gradientflow/{r['layer']}/{k}": float(r[k]) for r in rows for k in LOGGED
                       if isinstance(r.get(k), (int, float)) and r[k] == r[k]}
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)
        self.findings = self.probe.findings()
        for f in self.findings:
            rank_zero_info(f"gradientflow [{f.kind}] {', '.join(f.layers)}: {f.message} -> {f.recommendation}")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close(trainer, "finished")

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close(trainer, "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed",
                    message=f"{type(exception).__name__}: {exception}")

    def _close(self, trainer, status: str, message: str = "") -> None:
        if self.probe is not None:
            self.probe.detach()
        if self.run is not None:
            self.run.set_status(status, steps=trainer.global_step, message=message)
            self._writing.close()  # waits until every write has landed
