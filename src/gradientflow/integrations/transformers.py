"""A Hugging Face ``TrainerCallback`` that watches the model while ``transformers.Trainer`` trains it.

    from gradientflow.integrations.transformers import watch_trainer
    trainer = Trainer(model=model, args=args, train_dataset=data)
    watch_trainer(trainer, out="runs/mine", every=10)
    trainer.train()

One optimiser step is one probe step (``on_step_begin`` .. ``on_step_end``: with gradient
accumulation, every micro-batch of the step falls in it). Every ``every``-th step is measured.
At each of the trainer's log events the callback closes the probes' window, stores it in a
gradientflow run at ``out`` (written by the main process only, off the training thread; read by
``gradientflow inspect`` and ``gradientflow runs``) and adds the main per-layer scalars
(``gradientflow/<layer>/<statistic>``) to the logged values, so that every reporter the trainer
uses (TensorBoard, W&B, ...) receives them; ``watch_trainer`` puts the callback first for that.
At each epoch's end the findings (kind, layers, message, recommendation) go to the transformers
logger.

Needs ``pip install 'gradientflow[transformers]'``; the base package never imports transformers.
"""

from __future__ import annotations

import contextlib
import os

try:
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("gradientflow.integrations.transformers needs transformers: "
                      "pip install 'gradientflow[transformers]'") from err

from ..probes import watch
from ..store import Run

LOGGED = ("act_std", "saturated", "dead", "weight_grad_norm", "update_ratio")
logger = hf_logging.get_logger("gradientflow")


class GradientflowCallback(TrainerCallback):
    """Probe the model every ``every`` optimiser steps; ``layers``: names or globs of the modules to
    watch; ``out``: the gradientflow run folder (new or empty; None: in memory only, ``self.probe``)."""

    def __init__(self, out: str | os.PathLike | None = None, *, every: int = 10, layers=None, stats=None,
                 log_scalars: bool = True):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an integer >= 1")
        self.out, self.every, self.layers, self.stats, self.log_scalars = out, every, layers, stats, log_scalars
        self.probe = None
        self.run: Run | None = None
        self.findings: list = []
        self._writing = contextlib.ExitStack()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.probe = watch(model, every=self.every, layers=self.layers, stats=self.stats, steps="manual")
        if self.out is not None and state.is_world_process_zero:
            self.run = Run.create(self.out, {"integration": "transformers", "model": type(model).__name__,
                                             "probe_every": self.every, "layers": self.layers,
                                             "gradient_accumulation_steps": args.gradient_accumulation_steps})
            self._writing.enter_context(self.run.background())
            self.run.set_status("running", steps=0)

    def on_step_begin(self, args, state, control, **kwargs):
        self.probe.begin_step()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.probe.before_optimizer_step()  # the accumulated gradient, once per optimiser step

    def on_step_end(self, args, state, control, **kwargs):
        self.probe.end_step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = self.probe.flush(self.run, state.global_step)
        if self.log_scalars and rows and logs is not None:
            logs.update({f"gradientflow/{r['layer']}/{k}": float(r[k]) for r in rows for k in LOGGED
                         if isinstance(r.get(k), (int, float)) and r[k] == r[k]})

    def on_epoch_end(self, args, state, control, **kwargs):
        self.findings = self.probe.findings()
        if state.is_world_process_zero:
            for f in self.findings:
                logger.warning(f"gradientflow [{f.kind}] {', '.join(f.layers)}: {f.message} -> {f.recommendation}")

    def on_train_end(self, args, state, control, **kwargs):
        self.probe.flush(self.run, state.global_step)
        self.probe.detach()
        if self.run is not None:
            self.run.set_status("finished", steps=state.global_step)
            self._writing.close()  # waits until every write has landed


def watch_trainer(trainer, out: str | os.PathLike | None = None, **options) -> GradientflowCallback:
    """Add a ``GradientflowCallback`` to ``trainer`` as its first callback (so the scalars it adds to
    each log reach the trainer's reporters) and return it."""
    callback = GradientflowCallback(out, **options)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback
