"""Per-layer diagnostics of any nn.Module while it trains: ``watch``, its statistics, and findings."""

from . import findings, stats
from .probe import Probe, activation_of, watch

__all__ = ["Probe", "activation_of", "findings", "stats", "watch"]
