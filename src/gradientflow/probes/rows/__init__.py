"""The kinds of row a probe has, each one module implementing ``Kind``: ``layers`` (Linear, Conv,
Maxout), ``tables`` (embeddings), ``calls`` (nonlinearities called as functions), ``norms`` (normalisation layers), ``heads``
(attention, per head) and ``gates`` (recurrent layers and cells, per gate and direction). The rows
with a weight share ``weights`` (their gradient and update)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from ...activations import Activation
from ...layers import Layer
from ..state import Row, Seen


class Window(NamedTuple):
    """The window a probe closes: its first and last step, and its sampled steps (``manual`` loops
    count the marked steps; otherwise a row counts its own forward passes)."""

    first_step: int
    last_step: int
    sampled: int
    manual: bool

    def steps(self, row: Row) -> float:
        return self.sampled if self.manual else row.values["n"][0]


class Kind(Protocol):
    """A kind of row. Its constructor finds its modules in the model (those the ``layers=`` filter chooses)."""

    def install(self, add: Callable) -> None:
        """Install its taps for a sampled step, handing each removable handle to ``add``."""

    def state(self) -> list[Row]:
        """Its rows, whose named state the probe reads, reduces across ranks and resets."""

    def rows(self, window: Window) -> list[tuple[int, dict]]:
        """At a window's close (its rows' ``values`` read): (position in the forward pass, row) pairs."""

    def covers(self) -> dict[int, str | None]:
        """id(module) -> None for a module it covers, or why it does not (listed in ``skipped``)."""


@dataclass(eq=False)
class ActivationRow(Row):
    """A row with an activation h = f(z): a layer, a function call or a normalisation layer."""

    unit_dim: int = -1
    nonlinear: bool = False  # f is a known nonlinearity (its shares are 0, not NaN, without a region)
    saturated_region: tuple = ()
    dead_region: tuple = ()
    hist_range: tuple = (None, None)
    gx_from: tuple[Row, str] | None = None  # the row and gradient state that hold this layer's dL/dx
    layer: Layer | None = None
    record: Activation | None = None  # its nonlinearity's catalog record (a layer's: paired by data flow)
    units: int = 0
    steps: float = 0.0


def assemble(kinds, window: Window, groups: frozenset[str]) -> list[dict]:
    """A closed window's rows from every kind, in forward order (a module's rows where it ran), with
    the layer-to-layer gradient factor (``grad_factor``: a layer or activation row's ``act_grad_norm``
    over the next such row's; C2, C3), less the columns of the statistics not asked for."""
    from ..stats import GROUPS

    rows = [row for _, row in sorted((p for kind in kinds for p in kind.rows(window)), key=lambda p: p[0])]
    chain = [row for row in rows if "grad_factor" in row]
    for i, row in enumerate(chain):
        nxt = chain[i + 1]["act_grad_norm"] if i + 1 < len(chain) else math.nan
        row["grad_factor"] = row["act_grad_norm"] / nxt if nxt and math.isfinite(nxt) else math.nan
    dropped = [col for group, cols in GROUPS.items() if group not in groups for col in cols]
    for row in rows:
        for col in dropped:
            row.pop(col, None)
    return rows


def on_grad(row: ActivationRow, taps: tuple[str, ...]):
    """A tensor hook handing a gradient to ``taps`` (its moments computed once)."""
    def hook(grad: Tensor):
        with torch.no_grad():
            seen = Seen(grad)
            for tap in taps:
                row.feed(tap, seen)
    return hook
