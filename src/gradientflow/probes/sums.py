"""The probe's running sums for all its rows in one buffer on the model's device.

A probe adds a few scalars per layer and step (sums, counts). Added one by one into a buffer, each
costs torch a select, a dtype conversion and an in-place add: several times the cost of the
statistic itself for a 256 x 500 layer. Here a step's scalars wait in lists, still as 0-d tensors
on the device, and join the buffer together: one stack and one ``index_add_`` per dtype, at the
start of the next step or when the sums are read. Numbers known on the host (how many values a
statistic saw) are added in Python and never touch the device. Nothing is read back until ``read``.

Beside the sums, per sum, the first step (``step``, set by the probe) at which a value added to it
was not finite (inf or NaN): what a diverging run is found by, flagged on the device in the same
settle, with no read-back per step. It is kept across windows (``zero`` leaves it).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Sums:
    def __init__(self, device: torch.device):
        self.device = device
        self.total = torch.zeros(0, dtype=torch.float64, device=device)
        self.first_bad = torch.zeros(0, dtype=torch.float64, device=device)
        self.step = 0  # the step whose values are waiting
        self.host: list[float] = []
        self.waiting: dict[torch.dtype, tuple[list[Tensor], list[int]]] = {}

    def new_row(self, slots: int) -> int:
        """Room for a new row of ``slots`` sums; returns where it starts."""
        self.settle()
        start = len(self.host)
        self.host += [0.0] * slots
        self.total = torch.cat([self.total, torch.zeros(slots, dtype=torch.float64, device=self.device)])
        self.first_bad = torch.cat([self.first_bad, torch.full((slots,), torch.inf, dtype=torch.float64, device=self.device)])
        return start

    def add(self, at: int, value: Tensor | float) -> None:
        """Add ``value`` (a 0-d tensor, or a Python number known on the host) to sum ``at``."""
        if not isinstance(value, Tensor):
            self.host[at] += value
            return
        values, where = self.waiting.setdefault(value.dtype, ([], []))
        values.append(value)
        where.append(at)

    def settle(self) -> None:
        """Add every waiting value into the buffer: per dtype, one stack and one index_add_."""
        for values, where in self.waiting.values():
            index = torch.tensor(where, device=self.device)
            stacked = torch.stack(values).reshape(-1).to(torch.float64)
            self.total.index_add_(0, index, stacked)
            bad = torch.where(torch.isfinite(stacked), torch.inf, float(self.step)).to(torch.float64)
            self.first_bad.scatter_reduce_(0, index, bad, "amin")
        self.waiting = {}

    def read(self) -> list[float]:
        """Every sum (one transfer from the device)."""
        self.settle()
        return [d + h for d, h in zip(self.total.tolist(), self.host)]

    def read_first_bad(self) -> list[float]:
        """Per sum, the first step a non-finite value was added to it (inf: never; one transfer)."""
        self.settle()
        return self.first_bad.tolist()

    def zero(self) -> None:
        self.settle()
        self.total.zero_()
        self.host = [0.0] * len(self.host)
