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

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.utilities import rank_zero_info
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("gradientflow.integrations.lightning needs Lightning: pip install 'gradientflow[lightning]'") from err

from .watching import Watching


class GradientflowCallback(Watching, Callback):
    """Probe the module every ``every`` optimiser steps (``Watching`` names the options)."""

    def __init__(self, out=None, **options):
        Watching.__init__(self, out, **options)
        self._in_step = self._stepped = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start(pl_module, trainer.is_global_zero, integration="lightning", max_epochs=trainer.max_epochs)

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
        scalars = self.close_window(trainer.global_step)
        if scalars:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=trainer.global_step)
        for line in self.lines():
            rank_zero_info(line)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.finish(trainer.global_step, "finished")

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.finish(trainer.global_step, "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed",
                    message=f"{type(exception).__name__}: {exception}")
