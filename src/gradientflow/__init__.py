"""gradientflow: a laboratory for the training dynamics of deep networks, on PyTorch.

The public API, re-exported explicitly. Sub-modules and names are imported on first use (PEP 562),
so ``import gradientflow`` loads torch and the small core, never SciPy, pyarrow, DuckDB, pandas,
matplotlib or Jinja2 until a function that needs them is called.
"""

from importlib import import_module

# ``propagate`` is both a module and its main function; importing the module would shadow a lazy
# name with the module, so the function is bound eagerly (it costs torch, which everything needs).
from .propagate import LayerStats, propagate

__version__ = "0.1.0"

_MODULES = ("activations", "data", "experiments", "gaussian", "init", "job", "layers", "optim", "probes",
            "properties", "report", "schedules", "sql", "store", "theory", "train")
_NAMES = {
    "Activation": "activations", "CATALOG": "activations", "Maxout": "activations",
    "DataSpec": "config", "ModelSpec": "config", "ProbeSpec": "config", "TrainConfig": "config",
    "Scale": "init", "lsuv_": "init",
    "Layer": "layers", "walk": "layers",
    "initialize_": "model", "mlp": "model",
    "OptimizerSpec": "optim",
    "Properties": "properties", "measure": "properties",
    "watch": "probes",
    "Run": "store",
    "LoopSpec": "train", "Observer": "train", "Summary": "train", "fit": "train",
}

__all__ = sorted([*_MODULES, *_NAMES, "LayerStats", "propagate"])


def __getattr__(name: str):
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'gradientflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
