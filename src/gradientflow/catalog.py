"""The catalog's choices in one table: for each config field that names something from a catalog,
the names allowed and what an error calls them. The run config (and so the sweep spec, whose cells
are run configs), the lab's controls and the command line's help all read it, so a name added to
a catalog is offered and accepted everywhere at once."""

from __future__ import annotations

from . import activations, init, optim, schedules
from . import data as datasets

# field -> (the allowed names, what an error calls them)
CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "data": (datasets.BUILTIN, "dataset"),  # and files: idx:DIR, npz:FILE (data.check_spec)
    "activation": (activations.NAMES, "activation"),
    "init": (init.NAMES, "initialiser"),
    "normalize": (datasets.NORMALIZATIONS, "normalization"),
    "optimizer": (optim.OPTIMIZERS, "optimizer"),
    "schedule": (schedules.SCHEDULES, "schedule"),
}


def names(field: str) -> tuple[str, ...]:
    return CHOICES[field][0]


def listed(field: str) -> str:
    """The names allowed for ``field``, comma-separated (for help texts)."""
    return ", ".join(names(field))


def check(field: str, value: str, allowed: tuple[str, ...] | None = None) -> str:
    """``value`` if it is one of ``field``'s names (or of ``allowed``, a set-up's own subset or
    extension), else ValueError in one line listing what is allowed."""
    allowed = names(field) if allowed is None else allowed
    if value not in allowed:
        raise ValueError(f"unknown {CHOICES[field][1]}; expected one of: {', '.join(allowed)}")
    return value
