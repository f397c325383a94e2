"""gradientflow: a laboratory for the training dynamics of deep networks, on PyTorch.

The public API, re-exported explicitly.
"""

from . import (activations, data, experiments, gaussian, init, job, optim, probes, properties, report, schedules, store,
               theory, train)
from .config import TrainConfig
from .store import Run
from .train import Summary, fit
from .activations import CATALOG, Activation, Maxout
from .init import Scale, lsuv_
from .model import initialize_, mlp
from .properties import Properties, measure
from .probes import watch
from .propagate import LayerStats, propagate

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "CATALOG",
    "LayerStats",
    "Maxout",
    "Properties",
    "Run",
    "Scale",
    "Summary",
    "TrainConfig",
    "activations",
    "data",
    "experiments",
    "fit",
    "gaussian",
    "init",
    "initialize_",
    "job",
    "lsuv_",
    "measure",
    "mlp",
    "optim",
    "probes",
    "properties",
    "propagate",
    "report",
    "schedules",
    "store",
    "theory",
    "train",
    "watch",
]
