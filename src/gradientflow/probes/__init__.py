"""Per-layer diagnostics of any nn.Module while it trains: ``watch``, its statistics, and findings."""

from . import findings, stats
from ..layers import activation_of
from .probe import Probe, watch
from .stats import Statistic

__all__ = ["Probe", "Statistic", "activation_of", "findings", "stats", "watch"]
