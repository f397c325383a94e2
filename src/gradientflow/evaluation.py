"""The loss and the evaluation every trainer shares: the engine (``train``), the lab and the batched
trainer (``sweep.batched``), whose outputs carry a leading axis of K nets.

The task follows the targets' type (``data.Dataset.task``): class indices (integers) get the
cross-entropy and the accuracy; real targets (floats: a regression set, one output unit) get the
squared error and R².
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

EVAL_BATCH = 8192


def is_regression(target: torch.Tensor) -> bool:
    """Real-valued targets (a regression set) rather than class indices."""
    return target.is_floating_point()


def _one_unit(out: torch.Tensor) -> torch.Tensor:
    """A regression net's outputs [..., 1] as [...]; ValueError for a net with more output units."""
    if out.shape[-1] != 1:
        raise ValueError(f"a regression target needs a net with 1 output unit; this one has {out.shape[-1]}")
    return out.squeeze(-1)


def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean loss of outputs [B, C] against targets [B]; for K stacked nets, of [K, B, C] against
    [K, B], one mean per net. Class indices: the cross-entropy -log softmax(out)_y (``F.cross_entropy``,
    with the classes moved to dim 1, where it reads them fastest). Real targets: the squared error
    (out - y)² of the one output unit (``F.mse_loss``; the MSE, without the Playground's factor 1/2)."""
    if is_regression(target):
        if out.dim() == 2:
            return F.mse_loss(_one_unit(out), target)
        return F.mse_loss(_one_unit(out), target, reduction="none").mean(1)
    if out.dim() == 2:
        return F.cross_entropy(out, target)
    return F.cross_entropy(out.transpose(1, 2), target, reduction="none").mean(1)


def per_sample_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each sample's loss, as ``loss`` defines it (its mean is ``loss``): [B], or [K, B] for K nets."""
    if is_regression(target):
        return F.mse_loss(_one_unit(out), target, reduction="none")
    return F.cross_entropy(out.movedim(-1, 1), target, reduction="none")


def split_sums(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(summed loss, correct predictions) of ``forward`` over a whole split, in batches of
    ``EVAL_BATCH``, in float64: shape [2], or [K, 2] when ``forward`` gives K nets' outputs [K, B, C].
    Real targets have no correct predictions: 0."""
    sums = None
    for i in range(0, len(y), EVAL_BATCH):
        out, target = forward(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]
        if out.dim() == 3:
            target = target.unsqueeze(0).expand(out.shape[0], -1)
        per_sample = per_sample_loss(out, target).double()
        hits = torch.zeros_like(per_sample) if is_regression(target) else (out.argmax(-1) == target).double()
        part = torch.stack([per_sample.sum(-1), hits.sum(-1)], -1)
        sums = part if sums is None else sums + part
    return sums


def r2(mse: float, y: torch.Tensor) -> float:
    """The coefficient of determination of predictions with mean squared error ``mse`` on targets ``y``:
    R² = 1 - SS_res / SS_tot = 1 - MSE / Var(y), Var the population variance (the definition of
    scikit-learn's ``r2_score``). 1: a perfect fit; 0: no better than predicting the targets' mean;
    below 0: worse. NaN when the targets are all equal (Var(y) = 0)."""
    var = float(y.double().var(correction=0))
    return 1.0 - mse / var if var > 0 else math.nan


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, score) of ``model`` over a whole split, in eval mode, read back in one transfer; the
    model's mode is restored. The score is the accuracy for class indices, R² (``r2``) for real targets."""
    was_training = model.training
    model.eval()
    try:
        total, correct = split_sums(model, x, y).tolist()
    finally:
        model.train(was_training)
    mean = total / len(y)
    return (mean, r2(mean, y)) if is_regression(y) else (mean, correct / len(y))


def epoch_row(epoch: int, step: int, sums: tuple[float, float, float], test: tuple[float, float],
              regression: bool = False) -> dict:
    """An epoch's history row: ``sums`` are its summed training loss (times batch size), correct
    predictions and samples; ``test`` the test split's (loss, score) at its end (``evaluate``). A
    classification row has the train and test accuracy; a regression row the test R² (``test_r2``)
    and no accuracy."""
    loss_sum, correct, seen = sums
    if regression:
        return {"epoch": epoch, "step": step, "train_loss": loss_sum / seen, "test_loss": test[0], "test_r2": test[1]}
    return {"epoch": epoch, "step": step, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "test_loss": test[0], "test_accuracy": test[1]}
