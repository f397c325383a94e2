"""When a probe measures: a pure function from the step counter to a plan for that step.

A probe samples every ``every``-th training step (the first always). On a sampled step it counts
the histogram and the sign coherence too when the step is *heavy*: every sampled step with
``exact``, else the first sampled step of each window and every ``update_every``-th one. The update
ratio ||W_t - W_{t-1}|| / ||W_{t-1}|| needs the weights before the step: they are copied one step
before every ``update_every``-th sampled step. With ``window``, a window closes before every
``window``-th step that follows a step of the open window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Plan(NamedTuple):
    """What to do at one step."""

    close: bool  # close the open window before this step
    measure: bool  # this step is sampled: install the taps and measure
    heavy: bool  # ... and count the histogram and the sign coherence
    snapshot: bool  # copy the weights after this step's start: the next step measures the update


@dataclass(frozen=True)
class Schedule:
    every: int = 1
    update_every: int = 10
    window: int | None = None
    exact: bool = False
    updates: bool = True  # the update ratio is asked for

    def plan(self, step: int, sampled: int, window_heavy: bool, window_open: bool) -> Plan:
        """The plan for the step that follows ``step`` steps (counted from 0), of which ``sampled`` were
        sampled; ``window_heavy``: the open window has had a heavy step; ``window_open``: it has a step."""
        close = self.window is not None and step > 0 and step % self.window == 0 and window_open
        measure = step % self.every == 0
        heavy = measure and (self.exact or not (window_heavy and not close) or sampled % self.update_every == 0)
        nxt = step + 1
        snapshot = self.updates and nxt % self.every == 0 and (nxt // self.every) % self.update_every == self.update_every - 1
        return Plan(close, measure, heavy, snapshot)
