"""Helpers the experiments share: probing a fresh network once, training stored runs, reading them back."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import job
from ..config import TrainConfig
from ..data import Dataset
from ..probes import watch
from ..store import Run
from ..train import Summary, fit


def probe_once(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """One forward and backward pass of ``net`` on (x, y) under ``watch``: the probe's rows, one per layer."""
    net.train()
    with watch(net, exact=True) as probe:  # the claims read whole batches, every step
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        rows = probe.summary().to_dict("records")
    net.zero_grad(set_to_none=True)
    return rows


def gaussian_batch(n: int, dim: int, classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n unit-Gaussian inputs (the theory's assumption) with uniformly random labels, drawn from ``g``
    (the generator that drew the weights, after them: a second generator with the same seed would
    replay the weights' numbers as the inputs and correlate the two)."""
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def train(cfg: TrainConfig, folder: Path, label: str) -> dict:
    """Train ``cfg`` through the engine, stored as run ``folder/label``; its summary, per-step loss and the
    data's class count (``job.run``'s steps, with the dataset kept)."""
    net, d = job.prepare(cfg)
    summary = job.train(cfg, net, d, run=Run.create(folder / label, cfg.model_dump()))
    steps, loss = Run(folder / label).series("loss", "train")
    return {"label": label, "classes": d.classes, "status": summary.status, "message": summary.message, "steps": summary.steps,
            "train_loss": summary.train_loss, "test_accuracy": summary.test_accuracy,
            "epochs": [h["train_loss"] for h in summary.history],
            "test_accuracy_by_epoch": [h["test_accuracy"] for h in summary.history],
            "loss_steps": steps, "loss": loss}


def fit_config(cfg: TrainConfig, d: Dataset | None = None) -> Summary:
    """Train ``cfg`` through the engine without storing it (the experiments' many short runs), on ``d`` when
    given (a split the experiment cut itself), else on the config's own data."""
    net, own = job.prepare(cfg)
    parts = cfg.parts
    return fit(net, own if d is None else d, parts.optimizer, parts.loop)


def hidden(rows: list[dict]) -> list[dict]:
    """The probe rows of hidden layers (those with an activation), in forward order."""
    return [r for r in rows if isinstance(r["activation"], str) or r["type"] == "Maxout"]
