"""Sweeps: a spec (a base config, a grid, random draws) expanded into cells, each a stored run,
trained on a local process pool or a Ray cluster (``engines``), with one results table (``DIR/results.parquet``)."""

from . import heat
from .cell import RESULT_FIELDS
from .runner import read_results, run_sweep
from .spec import Cell, SweepSpec

__all__ = ["Cell", "RESULT_FIELDS", "SweepSpec", "heat", "read_results", "run_sweep"]
