"""The one thinning rule for every history kept past a cap: a probe's windows in memory
(``probes.history``) and in a run's tables (``store.Run.thin_table``), and the lab's curves."""

from __future__ import annotations


def every_second_older(ends) -> set:
    """The points to drop past a cap: every second one of the older half (the newest half stays
    whole), so a long run keeps its whole span at a coarser grain."""
    return set(sorted(ends)[:len(ends) // 2][1::2])
