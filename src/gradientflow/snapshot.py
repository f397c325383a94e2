"""Copies of a trainer's state, and the checks that a checkpoint read from disk can continue a run.

A snapshot (``Trainer.snapshot``) is both a checkpoint's content and the NaN guard's rollback
point; ``clone`` copies one fast, ``misfit`` says why a stored one does not belong to this run.
"""

from __future__ import annotations

import copy

import torch


def clone(obj):
    """A copy of a state dict: nested dicts, lists and tuples rebuilt and tensors cloned, the rest
    (numbers, strings) shared; anything else deep-copied. Much faster than ``copy.deepcopy``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(clone(v) for v in obj)
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    return copy.deepcopy(obj)


def _described(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def optimizer_misfit(saved, opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> str | None:
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


def misfit(state: dict, step: int, trainer) -> str | None:
    """Why a checkpoint's ``state`` (stored as step ``step``) cannot continue ``trainer``, or None:
    its model or optimiser state has other names or shapes, or its position, RNG state, history
    or epoch sums are not what a trainer writes. A checkpoint from another run, or one edited
    by hand, is refused here instead of failing inside ``load`` or later in training."""
    own = trainer.model.state_dict()
    saved = state["model"]
    if not isinstance(saved, dict) or set(saved) != set(own):
        return "its model has other parameters than this run's"
    for name, value in own.items():
        got = saved[name]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape or got.dtype != value.dtype:
            return f"its {name} is {_described(got)}, this model's is {_described(value)}"
    epoch, batch, at = state["epoch"], state["batch"], state.get("step", step)
    if not all(type(v) is int for v in (epoch, batch, at)) or not 0 <= batch < trainer.per_epoch \
            or epoch < 0 or not epoch * trainer.per_epoch + batch == at == step:
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
    return optimizer_misfit(state["optimizer"], trainer.opt, trainer.params) or (
        "its scheduler state does not match the config" if (state.get("scheduler") is None) != (trainer.sched is None) else None)
