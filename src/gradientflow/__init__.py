"""gradientflow: a laboratory for the training dynamics of deep networks, on PyTorch.

The public API, re-exported explicitly.
"""

from . import activations, gaussian, init, properties, theory
from .activations import CATALOG, Activation, Maxout
from .init import Scale, lsuv_
from .model import initialize_, mlp
from .properties import Properties, measure
from .propagate import LayerStats, propagate

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "CATALOG",
    "LayerStats",
    "Maxout",
    "Properties",
    "Scale",
    "activations",
    "gaussian",
    "init",
    "initialize_",
    "lsuv_",
    "measure",
    "mlp",
    "properties",
    "propagate",
    "theory",
]
