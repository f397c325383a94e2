"""The kinds of row a probe has, each one module implementing ``Kind``: ``layers`` (Linear, Conv,
Maxout), ``calls`` (nonlinearities called as functions), ``norms`` (normalisation layers), ``heads``
(attention, per head) and ``gates`` (recurrent layers and cells, per gate and direction)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from torch import nn

from ...layers import Layer
from ..state import Row


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
    gx_from: Row | None = None  # the row whose dL/dh is this layer's dL/dx
    layer: Layer | None = None
    units: int = 0
    steps: float = 0.0


def modules(model: nn.Module, kinds: tuple[type, ...], chosen, selects) -> list[tuple[str, nn.Module]]:
    """The chosen modules of the given types, named (the model itself by its class name)."""
    return [(name or type(m).__name__, m) for name, m in model.named_modules()
            if isinstance(m, kinds) and selects(chosen, name, m)]
