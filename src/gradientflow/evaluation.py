"""The loss and the evaluation every trainer shares: the engine (``train``), the lab and the batched
trainer (``sweep.batched``), whose logits carry a leading axis of K nets."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

EVAL_BATCH = 8192


def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of logits [B, C] against targets [B]; for K stacked nets, of [K, B, C]
    against [K, B], one mean per net (the classes moved to dim 1, where ``F.cross_entropy`` reads
    them fastest)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, target)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)


def split_sums(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(summed cross-entropy, correct predictions) of ``forward`` over a whole split, in batches of
    ``EVAL_BATCH``, in float64: shape [2], or [K, 2] when ``forward`` gives K nets' logits [K, B, C]."""
    sums = None
    for i in range(0, len(y), EVAL_BATCH):
        out, target = forward(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]
        if out.dim() == 3:
            target = target.unsqueeze(0).expand(out.shape[0], -1)
        per_sample = F.cross_entropy(out.movedim(-1, 1), target, reduction="none").double()
        part = torch.stack([per_sample.sum(-1), (out.argmax(-1) == target).sum(-1).double()], -1)
        sums = part if sums is None else sums + part
    return sums


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` over a whole split, in eval mode, read back in one
    transfer; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        total, correct = split_sums(model, x, y).tolist()
    finally:
        model.train(was_training)
    return total / len(y), correct / len(y)


def epoch_row(epoch: int, step: int, sums: tuple[float, float, float], test: tuple[float, float]) -> dict:
    """An epoch's history row: ``sums`` are its summed training loss (times batch size), correct
    predictions and samples; ``test`` the test split's (loss, accuracy) at its end."""
    loss_sum, correct, seen = sums
    return {"epoch": epoch, "step": step, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "test_loss": test[0], "test_accuracy": test[1]}
