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

try:
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("gradientflow.integrations.transformers needs transformers: "
                      "pip install 'gradientflow[transformers]'") from err

from .watching import Watching

logger = hf_logging.get_logger("gradientflow")


class GradientflowCallback(Watching, TrainerCallback):
    """Probe the model every ``every`` optimiser steps (``Watching`` names the options)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start(model, state.is_world_process_zero, integration="transformers",
                   gradient_accumulation_steps=args.gradient_accumulation_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        self.probe.begin_step()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.probe.before_optimizer_step()  # the accumulated gradient, once per optimiser step

    def on_step_end(self, args, state, control, **kwargs):
        self.probe.end_step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        scalars = self.close_window(state.global_step)
        if logs is not None:
            logs.update(scalars)
        if scalars and state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(scalars)  # the trainer copied ``logs`` into its history before this

    def on_epoch_end(self, args, state, control, **kwargs):
        lines = self.lines()
        if state.is_world_process_zero:
            for line in lines:
                logger.warning(line)

    def on_train_end(self, args, state, control, **kwargs):
        self.close_window(state.global_step)
        self.finish(state.global_step, "finished")


def watch_trainer(trainer, out=None, **options) -> GradientflowCallback:
    """Add a ``GradientflowCallback`` to ``trainer`` as its first callback (so the scalars it adds to
    each log reach the trainer's reporters) and return it."""
    callback = GradientflowCallback(out, **options)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback
