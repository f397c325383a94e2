"""Sweeps: a spec (a base config, a grid, random draws) expanded into cells, each a stored run,
trained on a pool of worker processes, with one results table (``DIR/results.parquet``)."""

from . import heat
from .local import RESULT_FIELDS, read_results, run_sweep
from .spec import Cell, SweepSpec

__all__ = ["Cell", "RESULT_FIELDS", "SweepSpec", "heat", "read_results", "run_sweep"]
