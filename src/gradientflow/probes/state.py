"""Named state: what a statistic keeps over a window, where it lives, how it is reset and reduced.

Every row of a probe (a layer, a function call, a normalisation layer, an attention module, a
recurrent layer) is a ``Row``: its statistics' named state and the statistics fed at its *taps*.
A tap is a named place where the model's tensors are handed to the row (``INPUT``, ``PRE``, ...);
a statistic reads one tap. The state is of two sorts:

- scalars (``State(name, size)``): float64 sums in the probe's one on-device buffer (``Sums``),
  added without a host synchronisation and read back once per window for every row together;
- tensors (``State(name, size=0)``): a tensor of the statistic's own (a histogram, a mask of the
  units seen active, per-head sums), made at its first use and added in place.

Each piece of state carries its rule for the reduction across ranks (``ranks.reduce``): summed, and
then divided by W**scale over W ranks (``scale`` 1 for a count every rank makes of the same steps,
1 and 2 for the first and second sums of a gradient, whose global-batch value is each rank's over W),
or ``op="max"`` (a flag set on any rank). Reset and reduction are generic over the named state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .stats import moment_sums
from .sums import Sums

# the taps: where a row is handed the model's tensors (a statistic reads one)
CALL = "call"  # once per forward call of the row, with nothing: whatever else it is fed
INPUT = "input"  # x, the row's input
PRE = "pre_activation"  # z = W x + b, the layer's output (a function or norm row: its input)
ACT = "activation"  # h = f(z), with the z the nonlinearity was applied to (``Seen.z``)
ACT_GRAD = "activation_grad"  # dL/dh
PRE_GRAD = "pre_activation_grad"  # dL/dz
INPUT_GRAD = "input_grad"  # dL/dx
WEIGHT_GRAD = "weight_grad"  # dL/dW, once per step (or per backward pass)
UPDATE = "update"  # W after an optimiser step, with ``Seen.z`` the weights before it
WEIGHT = "weight"  # never fed: read from the module when a window closes
LOGITS = "attention_logits"  # (batch, heads, queries, keys) masked attention logits
GATES = "gates"  # per recurrent row, its gates' pre-activations (T, N, gates * H)
STATES = "hidden_states"  # per recurrent row, its hidden states
TIME_GRAD = "time_grad"  # per recurrent row and time step, ||dL_T/dh_t||


@dataclass(frozen=True)
class State:
    """A statistic's named state: ``size`` scalar sums in the probe's buffer, or with ``size=0`` a
    tensor of its own. Across W ranks: summed, element i then divided by W**scale[i % len(scale)];
    ``op="max"``: the largest value of any rank (a flag set on any rank)."""

    name: str
    size: int = 1
    scale: tuple[int, ...] = (0,)
    op: str = "sum"


class Seen:
    """A tensor handed to a tap, with its moments computed once however many statistics read them;
    ``z``: for the activation tap, the tensor the nonlinearity was applied to (None where it is gone)."""

    __slots__ = ("t", "z", "_moments")

    def __init__(self, t: Tensor, z: Tensor | None = None):
        self.t, self.z, self._moments = t, z, None

    def moments(self) -> tuple:
        if self._moments is None:
            self._moments = moment_sums(self.t)
        return self._moments


@dataclass
class Context:
    """What every row of one probe shares: the step's plan, the options, the on-device buffer."""

    sums: Sums
    bins: int
    exact: bool
    collective: Callable | None = None  # the all-reduce across ranks (``ranks.all_reduce``); None for one process
    paused: Callable = contextlib.nullcontext  # inside it, torch calls are the probe's own, not the model's
    active: bool = False  # this step is sampled and is a training pass: the taps measure
    heavy: bool = False  # this sampled step also counts the histogram and the sign coherence
    seen: int = 0  # rows placed in the forward pass so far

    def place(self, row: "Row") -> None:
        """Give a row its position in the forward pass the first time it is seen."""
        if row.order < 0:
            row.order = self.seen
            self.seen += 1


@dataclass(eq=False)
class Row:
    """One row's statistics and their named state. ``feed`` hands a tap's tensor to the statistics
    that read it; ``values`` is the state read back at a window's close."""

    name: str
    ctx: Context
    stats: tuple
    order: int = -1
    at: dict[str, int] = field(default_factory=dict)  # scalar state -> where it starts in the buffer
    tensors: dict[str, Tensor | None] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    first_bad: dict = field(default_factory=dict)
    _by_tap: dict[str, list] = field(default_factory=dict)

    def __post_init__(self):
        for stat in self.stats:
            self._by_tap.setdefault(stat.tap, []).append(stat)
            for s in stat.states:
                if s.size:
                    self.at[s.name] = self.ctx.sums.new_row(s.size)
                else:
                    self.tensors[s.name] = None

    @property
    def specs(self) -> dict[str, State]:
        return {s.name: s for stat in self.stats for s in stat.states}

    def reads(self, tap: str) -> bool:
        return tap in self._by_tap

    def feed(self, tap: str, seen: Seen) -> None:
        stats = self._by_tap.get(tap)
        if stats:
            with torch._C.DisableTorchFunction():  # the statistics' torch calls are the probe's, no mode's
                for stat in stats:
                    stat.add(self, seen)

    def add(self, name: str, value, i: int = 0) -> None:
        """Add ``value`` (a 0-d tensor or a host number) to element ``i`` of scalar state ``name``."""
        self.ctx.sums.add(self.at[name] + i, value)

    def add_moments(self, name: str, m: tuple) -> None:
        at, add = self.at[name], self.ctx.sums.add
        add(at, m[0])
        add(at + 1, m[1])
        add(at + 2, m[2])

    def accumulate(self, name: str, value: Tensor) -> None:
        """Add ``value`` into tensor state ``name`` (made from it at its first use)."""
        have = self.tensors[name]
        self.tensors[name] = value if have is None else have + value

    def read(self, host: list[float], first_bad: list[float] | None = None) -> None:
        """Take this row's values from the buffer's ``host`` copy (the tensors stay tensors), and per
        scalar state the first step it saw a non-finite value (``first_bad``; inf: never)."""
        specs = self.specs
        self.values = {name: host[at:at + specs[name].size] for name, at in self.at.items()}
        self.values.update(self.tensors)
        if first_bad is not None:
            self.first_bad = {name: min(first_bad[at:at + specs[name].size]) for name, at in self.at.items()}

    def zero(self) -> None:
        """The tensors start again (the buffer is zeroed by its owner, once for every row)."""
        for name, t in self.tensors.items():
            if t is not None and self.specs[name].op == "max":
                t.zero_()
            else:
                self.tensors[name] = None


def recomputing() -> bool:
    """A forward run inside a backward pass (activation checkpointing recomputes it): not a new call."""
    return torch._C._current_graph_task_id() != -1


def eager(hook: Callable) -> Callable:
    """A hook that runs as plain Python under ``torch.compile`` (Dynamo breaks the graph there rather
    than trace the probe's own code: the model compiles, the probe measures what eager hooks see)."""
    return torch.compiler.disable(hook)
