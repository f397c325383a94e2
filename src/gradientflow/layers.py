"""The one walk over a network's layers: each parametric module with the nonlinearity it feeds.

A *layer* is a parametric module (Linear, Conv1d/2d/3d, Maxout, a transposed linear layer)
together with the activation module that consumes its output. Given an example input, ``walk``
finds that activation by data flow: one forward pass follows each layer's output through the
modules that pass a signal on unchanged in kind (normalisation, dropout, ``Identity``:
``passes_on``) to the activation module it enters (``Flow``). Without one, it takes the first
activation module that follows the layer in the model's module order, before the next parametric
module: the same answer for a network whose forward calls its modules in the order it lists them
(``model.mlp``, a ``Sequential``). Maxout is its own nonlinearity. The probes (which follow the
data flow on every call with the same ``Flow``), ``propagate``, ``model.initialize_`` and the
experiments all see a network through ``walk``, so they agree on what its layers are.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> [(l.name, l.activation.name if l.activation else None) for l in walk(net)]
    [('0', 'tanh'), ('2', None)]
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from . import activations
from .activations import Activation, Maxout

PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, Maxout)


def transposed_linear(module: nn.Module) -> bool:
    """A linear layer that stores its weight as (in, out) and computes x W + b: GPT-2's ``Conv1D``
    (``transformers.pytorch_utils``), recognised by its name and its ``nf`` (out) and weight shape."""
    weight = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and isinstance(weight, Tensor) and weight.dim() == 2 \
        and weight.shape[1] == getattr(module, "nf", None)


def parametric(module: nn.Module) -> bool:
    """Whether a module is a layer with weights the walk knows."""
    return isinstance(module, PARAMETRIC) or transposed_linear(module)


LayerFilter = tuple[type, ...] | list[str] | Callable[[str, nn.Module], bool] | None
"""Which modules are layers: module types, module names or globs, or a predicate ``(name, module) -> bool``."""


@dataclass(frozen=True)
class Layer:
    """One layer of a network: the parametric ``module`` and the nonlinearity it feeds.

    ``activation_module`` is the activation module after it (None for a layer that feeds none,
    such as the read-out, and for a Maxout, which is its own nonlinearity); ``activation`` is the
    catalog record of that module (None where there is none or it is not in the catalog).
    """

    name: str
    module: nn.Module
    activation_module: nn.Module | None
    activation: Activation | None

    @property
    def parameter(self) -> Tensor:
        """The weight parameter itself, as the optimiser holds it."""
        return self.module.linear.weight if isinstance(self.module, Maxout) else self.module.weight

    @property
    def weight(self) -> Tensor:
        """The weight with one row per unit (a transposed view for a ``Conv1D``-style layer)."""
        return self.unit_rows(self.parameter)

    def unit_rows(self, t: Tensor) -> Tensor:
        """A weight-shaped tensor (the weight, its gradient) with one row per unit."""
        return t.t() if transposed_linear(self.module) else t

    @property
    def bias(self) -> Tensor | None:
        return self.module.linear.bias if isinstance(self.module, Maxout) else self.module.bias

    @property
    def units(self) -> int:
        """Output units (channels for a convolution; a Maxout unit owns all its pieces)."""
        return self.module.out_features if isinstance(self.module, Maxout) else self.weight.shape[0]

    @property
    def unit_dim(self) -> int:
        """The dimension of the layer's output that indexes units: channels for a convolution."""
        return 1 if isinstance(self.module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else -1

    @property
    def nonlinearity(self) -> str | None:
        """The name of the nonlinearity the layer feeds: "maxout", a catalog name, or None."""
        if isinstance(self.module, Maxout):
            return "maxout"
        return self.activation.name if self.activation is not None else None

    @property
    def hidden(self) -> bool:
        """True when the layer feeds a nonlinearity (a hidden layer, not a linear read-out)."""
        return isinstance(self.module, Maxout) or self.activation_module is not None


def activation_of(module: nn.Module) -> Activation | None:
    """The catalog record of an activation module, honouring its parameters (slope, alpha)."""
    if isinstance(module, nn.LeakyReLU):
        return activations.leaky_relu(module.negative_slope)
    if isinstance(module, nn.ELU):
        return activations.elu(module.alpha)
    if isinstance(module, nn.PReLU):
        return activations.prelu(float(module.weight.detach().mean()))
    if isinstance(module, nn.ReLU6):
        return _named_variant("relu6")
    if isinstance(module, nn.Hardtanh) and (module.min_val, module.max_val) != (-1.0, 1.0):
        return None
    if isinstance(module, (nn.Hardswish, nn.Hardsigmoid)):
        return _named_variant(type(module).__name__.lower())
    found = _catalog_by_type().get(type(module))
    name = type(module).__name__
    if found is None and not any(True for _ in module.children()) and not any(True for _ in module.parameters()):
        # a model's own: a GELU or its tanh approximation (GPT-2's NewGELUActivation), a SiLU (HF's SiLUActivation)
        if "GELU" in name:
            return activations.CATALOG["gelu"]
        if "SiLU" in name or "Swish" in name:
            return activations.CATALOG["silu"]
    return found


@functools.cache
def _named_variant(name: str) -> Activation:
    """The records the probes know beyond the catalog, built once each."""
    return {"relu6": activations.relu6, "hardswish": activations.hardswish, "hardsigmoid": activations.hardsigmoid}[name]()


@functools.cache
def _catalog_by_type() -> dict[type, Activation]:
    """Module class -> catalog record, built once (each record's module factory is called once)."""
    by_type: dict[type, Activation] = {}
    for act in activations.CATALOG.values():
        by_type.setdefault(type(act.module(1)), act)
    return by_type


def selects(wanted: LayerFilter, name: str, module: nn.Module) -> bool:
    """Whether the filter chooses this module: any module for None; by type for a tuple; for a list,
    when the module's name matches one of its names or globs (``fnmatch``: ``"encoder.*.linear1"``,
    ``"lstm"``); else the predicate's answer."""
    if wanted is None:
        return True
    if isinstance(wanted, tuple):
        return isinstance(module, wanted)
    if isinstance(wanted, list):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in wanted)
    return bool(wanted(name, module))


PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def is_norm(module: nn.Module) -> bool:
    """Torch's batch, instance, layer, group and RMS norms, and a model's own (Llama's ``LlamaRMSNorm``,
    T5's ``T5LayerNorm``): a module without children whose class name says it normalises and whose
    parameters are all vectors (a per-feature gain and bias)."""
    if isinstance(module, NORMS):
        return True
    params = list(module.parameters(recurse=False))
    return "Norm" in type(module).__name__ and not any(True for _ in module.children()) \
        and all(p.dim() == 1 for p in params) and not isinstance(module, nn.Embedding)


def passes_on(module: nn.Module) -> bool:
    """Whether a module between a layer and its activation keeps the pairing: it passes the signal on
    unchanged in kind (dropout, ``Identity``, a normalisation layer)."""
    return isinstance(module, PASS_THROUGH) or is_norm(module)


class Flow:
    """One forward's map from a tensor to the layer call whose output it carries, followed through
    the modules that pass a signal on (``passed`` is their forward hook)."""

    def __init__(self):
        self.carries: dict[int, tuple[Tensor, object]] = {}  # id -> (the tensor, its call); the tensor kept alive

    def made(self, output: Tensor, call) -> None:
        self.carries[id(output)] = (output, call)

    def passed(self, module, inputs, output) -> None:
        call = self.of(inputs[0]) if inputs and isinstance(inputs[0], Tensor) else None
        if call is not None and isinstance(output, Tensor):
            self.carries[id(output)] = (output, call)

    def of(self, t: Tensor):
        """The call whose output ``t`` carries, or None."""
        found = self.carries.get(id(t))
        return found[1] if found is not None and found[0] is t else None


def walk(model: nn.Module, wanted: LayerFilter = None, example: Tensor | None = None) -> list[Layer]:
    """The layers of ``model`` in module order, each with the activation it feeds: by data flow in
    one forward pass of ``example`` where given, else the next activation module in module order.

    ``wanted`` picks the layers (default: every Linear, Conv and Maxout); the modules inside a
    Maxout are part of it, never layers of their own.
    """
    named = list(model.named_modules())
    inside_maxout = {id(m) for _, mo in named if isinstance(mo, Maxout) for m in mo.modules() if m is not mo}
    chosen = [(i, name, m) for i, (name, m) in enumerate(named)
              if id(m) not in inside_maxout and parametric(m) and selects(wanted, name, m)]
    consumers = _consumers(model, [m for _, _, m in chosen], example) if example is not None else None
    found = []
    for i, name, module in chosen:
        if isinstance(module, Maxout):
            act_module = None
        elif consumers is not None:
            act_module = consumers.get(id(module))
        else:
            act_module = _next_activation([m for _, m in named[i + 1:]])
        act = activation_of(act_module) if act_module is not None else None
        found.append(Layer(name or type(module).__name__, module, act_module, act))
    return found


def _next_activation(following: list[nn.Module]) -> nn.Module | None:
    """The first activation module among those that follow a layer, before the next parametric one."""
    for m in following:
        if parametric(m):
            return None
        if activation_of(m) is not None:
            return m
    return None


def _consumers(model: nn.Module, layer_modules: list[nn.Module], example: Tensor) -> dict[int, nn.Module]:
    """id(layer module) -> the activation module its output entered first, in one forward of ``example``
    in eval mode (no running statistic moves)."""
    flow, paired, hooks = Flow(), {}, []

    def consume(module, inputs, output):
        layer = flow.of(inputs[0]) if inputs and isinstance(inputs[0], Tensor) else None
        if layer is not None:
            paired.setdefault(id(layer), module)

    for m in layer_modules:
        hooks.append(m.register_forward_hook(lambda m, i, o: flow.made(o, m) if isinstance(o, Tensor) else None))
    for m in model.modules():
        if passes_on(m):
            hooks.append(m.register_forward_hook(flow.passed))
        elif activation_of(m) is not None:
            hooks.append(m.register_forward_hook(consume))
    forward_once(model, example, hooks)
    return paired


@torch.no_grad()
def forward_once(model: nn.Module, x: Tensor, hooks: list) -> None:
    """One forward of ``x`` in eval mode (no running statistic moves) for the forward ``hooks`` to
    see; then they are removed and the model's mode restored, whatever happened."""
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def hidden(model: nn.Module, example: Tensor | None = None) -> list[Layer]:
    """The layers of ``model`` that feed a nonlinearity, in order (an ``mlp``'s read-out is left out);
    paired by data flow where ``example`` is given (``walk``)."""
    return [layer for layer in walk(model, example=example) if layer.hidden]
