"""Memory estimates made from sizes, before anything is allocated.

A width, depth, batch or sample count can each be within its range while their product asks for
hundreds of gigabytes; torch would then fail half-way with a traceback (or the machine would swap).
Each study estimates what it will hold at its peak from its sizes, in float32 bytes, and ``refuse``
stops it in one line, naming the estimate, when that exceeds the limit: the machine's physical memory,
or a smaller ``--max-memory``. The estimates count what the study keeps, not allocator overhead, so
a refusal is certain to be right; a study just under the limit may still be tight.
"""

from __future__ import annotations

import os
import re

FLOAT = 4  # bytes of a float32
_UNITS = {"": 1, "b": 1, **{u + tail: 2**(10 * i) for i, u in enumerate("kmgt", 1) for tail in ("", "ib")},
          **{u + "b": 10**(3 * i) for i, u in enumerate("kmgt", 1)}}


def machine() -> int:
    """This machine's physical memory in bytes (16 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def parse(text: str | int, option: str = "--max-memory", least: int = 2**20) -> int:
    """Bytes from ``'8G'`` or ``'8GiB'`` (powers of 1024), ``'8GB'`` (powers of 1000), ``'2e9'`` or an int;
    ValueError naming ``option`` and the value when it is not a size or is under ``least`` bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?i?b?)\s*", str(text).lower())
        if m is None or m[2] not in _UNITS:
            raise ValueError(f"{option} {text!r}: expected a size such as 512M, 8G, 8GB or 2e9 (bytes)")
        value = int(float(m[1]) * _UNITS[m[2]])
    if value < least:
        raise ValueError(f"{option} {text!r}: at least {readable(least)}")
    return value


def readable(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def mlp_parameters(features: int, width: int, depth: int, classes: int, pieces: int = 1) -> int:
    """Weights and biases of ``model.mlp``: ``depth`` hidden layers of ``width`` units (``pieces``
    linear pieces each for maxout), then a ``classes``-way linear read-out (none for 0)."""
    if depth == 0:
        return (features + 1) * classes
    hidden = (features + 1) * width * pieces + (depth - 1) * (width + 1) * width * pieces
    return hidden + (width + 1) * classes


def training(features: int, width: int, depth: int, classes: int, *, batch: int, samples: int,
             eval_batch: int = 8192) -> int:
    """Peak bytes of ``fit`` on an ``mlp``: the parameters four times (weights, gradients, two optimiser
    moments for Adam), the data twice (as loaded and normalised), and one batch's activations kept for
    the backward pass (pre-activation and output per hidden unit, and their gradients) or one
    evaluation batch's (outputs only, under ``no_grad``), whichever is larger."""
    params = mlp_parameters(features, width, depth, classes)
    per_sample = depth * width + classes
    activations = max(batch * per_sample * 4, min(eval_batch, samples) * per_sample)
    return FLOAT * (4 * params + 2 * samples * (features + 2) + activations)


def propagation(width: int, depth: int, batch: int, pieces: int = 1) -> int:
    """Peak bytes of ``propagate.study``: the ``width`` x ``width`` net's parameters and every layer's
    output for the ``batch`` (kept for the histograms), with maxout's ``pieces`` pre-activations."""
    return FLOAT * (mlp_parameters(width, width, depth, 0, pieces) + batch * width * (depth * (1 + pieces) + 1))


def refuse(what: str, needed: int, limit: int | None = None) -> None:
    """ValueError, one line naming the estimate and the limit, when ``needed`` bytes exceed ``limit``
    (default: this machine's memory)."""
    allowed = machine() if limit is None else limit
    if needed > allowed:
        source = "--max-memory" if limit is not None else "this machine's memory"
        raise ValueError(f"{what} needs about {readable(needed)} of memory, more than {source} "
                         f"({readable(allowed)}); make it smaller")
