"""Per-layer diagnostics of any nn.Module while it trains: ``watch``, its statistics, and findings."""

from . import findings, stats
from ..layers import activation_of
from .probe import Probe, watch

__all__ = ["Probe", "activation_of", "findings", "stats", "watch"]
