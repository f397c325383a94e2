"""The typed records around a training run: ``LoopSpec`` goes in, ``Summary`` comes out, and an
``Observer`` (a probe) watches each step. Plain data; the loop that uses them is ``train``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .store import Run


@dataclass
class Summary:
    """The outcome of ``fit``: ``status`` is finished, diverged or interrupted."""

    status: str
    steps: int
    epochs: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    run_dir: str | None = None
    message: str = ""
    test_r2: float = math.nan  # a regression run's test R² (its accuracies are NaN: it has no classes)
    history: list[dict] = field(default_factory=list, repr=False)  # one row per epoch

    def to_dict(self) -> dict:
        return asdict(self)

    def stored(self) -> dict:
        """What a run's status.json keeps beside the status: every field but the status and the history."""
        return {k: v for k, v in self.to_dict().items() if k not in ("status", "history")}

    @classmethod
    def from_history(cls, status: str, steps: int, per_epoch: int, seconds: float, history: list[dict],
                     run_dir: str | None = None, message: str = "") -> "Summary":
        """The summary of a run at ``steps`` whose last epoch row (if any) holds its final numbers."""
        last = history[-1] if history else {}
        return cls(status=status, steps=steps, epochs=steps / per_epoch, seconds=seconds,
                   train_loss=last.get("train_loss", math.nan), train_accuracy=last.get("train_accuracy", math.nan),
                   test_loss=last.get("test_loss", math.nan), test_accuracy=last.get("test_accuracy", math.nan),
                   test_r2=last.get("test_r2", math.nan), run_dir=run_dir, message=message, history=history)


class LoopSpec(BaseModel):
    """How ``fit`` loops: epochs, mini-batch size, the seed of the shuffling, checkpoints, how often
    the total gradient norm is logged (it costs a pass over every gradient) and the device.
    ``checkpoint_every``: steps between checkpoints; None (the default) checkpoints by the clock,
    at most once every ``train.CHECKPOINT_SECONDS`` of training, and at the end."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(20, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    checkpoint_every: int | None = Field(None, ge=1)
    grad_norm_every: int = Field(50, ge=1, le=1_000_000)  # steps between logged gradient norms (steps 1, 1+k, ...)
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda", "auto") and not v.startswith("cuda:"):
            raise ValueError("unknown device; expected cpu, cuda, cuda:N or auto")
        return v


class Observer(Protocol):
    """What ``fit`` calls on each observer (a probe). Subclass it to inherit the no-op defaults."""

    def after_backward(self, step: int) -> None:
        """Step ``step`` (counted from 1) has its gradients; the optimiser has not stepped yet."""

    def flush(self, run: Run | None, step: int) -> None:
        """A checkpoint at ``step``: write what was gathered into ``run``."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the observer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned, on resume."""


class MetricRows:
    """Metric rows in the columns of ``store.METRIC_SCHEMA`` (step, epoch, split, name, value), kept
    until a checkpoint hands them to the store (``take``)."""

    COLUMNS = ("step", "epoch", "split", "name", "value")

    def __init__(self):
        self.cols: dict[str, list] = {k: [] for k in self.COLUMNS}

    def extend(self, steps: list, epochs: list, names: list, values: list, split: str = "train") -> None:
        for col, column in zip(self.cols.values(), (steps, epochs, [split] * len(steps), names, values)):
            col.extend(column)

    def add(self, step: int, epoch: int, split: str, name: str, value: float) -> None:
        self.extend([step], [epoch], [name], [value], split)

    def add_epoch(self, row: dict, epoch: int) -> None:
        """An epoch's history row as metric rows: train means (split train_epoch) and test (split test),
        each of loss, accuracy and r2 that the row has (a regression row: no accuracy, a test r2)."""
        for name in ("loss", "accuracy", "r2"):
            for split, prefix in (("train_epoch", "train"), ("test", "test")):
                if f"{prefix}_{name}" in row:
                    self.add(row["step"], epoch, split, name, row[f"{prefix}_{name}"])

    def __len__(self) -> int:
        return len(self.cols["step"])

    def take(self) -> dict[str, list]:
        """The rows kept so far; the log starts empty again."""
        cols, self.cols = self.cols, {k: [] for k in self.COLUMNS}
        return cols
