"""Nonlinearities called as functions inside a module's ``forward`` (``F.relu(self.fc(x))``,
``torch.tanh``, ``x.sigmoid()``, ``F.gelu``, a ``TransformerEncoderLayer``'s ``activation``).

No module hook sees them, so the probe watches the forward pass itself on its sampled steps: a
``TorchFunctionMode`` (torch's own interposition on every torch function call) sees each call,
and global module hooks keep the stack of modules being run and the output each one returned.
A call is named after the module whose output it is applied to (``F.relu(self.fc1(x))`` in any
module: ``"block.fc1:relu"``), else after the innermost module running (``"block:relu"``), with
``#2``, ``#3`` for further calls under the same name in one forward pass. Calls made by an
activation *module* (``nn.ReLU`` calls ``F.relu``) are left to that module's own hook.
``F.scaled_dot_product_attention`` calls are handed on as attention (``"block:attention"``), and so
is a softmax over the last dimension of a 4-d tensor (batch, heads, queries, keys) taken inside a
module whose class name says it is attention (the eager path of Hugging Face models): its input
is the masked, scaled logits.

The first sampled step is a discovery pass; if the model makes no such call, nothing is
installed again and the other steps cost nothing. Where it does, the mode and the hooks are
installed for the sampled steps only.
"""

from __future__ import annotations

import threading

from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .. import activations
from ..activations import Activation
from ..layers import activation_of


def _leaky(args, kwargs) -> Activation:
    slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
    return activations.leaky_relu(float(slope))


def _elu(args, kwargs) -> Activation:
    return activations.elu(float(kwargs.get("alpha", args[1] if len(args) > 1 else 1.0)))


def _gelu(args, kwargs) -> Activation | None:
    exact = kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "none"
    return activations.CATALOG["gelu"] if exact else None  # the tanh approximation is not the catalog's gelu


def _named(name: str):
    return lambda args, kwargs: activations.CATALOG[name]


# torch function -> (row name, the catalog record for its arguments or None: statistics without regions)
FUNCTIONS: dict[Callable, tuple[str, Callable]] = {}
for _fns, _name, _record in (
    ((F.relu, torch.relu, Tensor.relu, F.relu_, torch.relu_, Tensor.relu_), "relu", _named("relu")),
    ((torch.tanh, Tensor.tanh, F.tanh, Tensor.tanh_, torch.tanh_), "tanh", _named("tanh")),
    ((torch.sigmoid, Tensor.sigmoid, F.sigmoid, Tensor.sigmoid_, torch.sigmoid_), "sigmoid", _named("sigmoid")),
    ((F.gelu,), "gelu", _gelu),
    ((F.silu,), "silu", _named("silu")),
    ((F.mish,), "mish", _named("mish")),
    ((F.softplus,), "softplus", _named("softplus")),
    ((F.selu, torch.selu), "selu", _named("selu")),
    ((F.elu,), "elu", _elu),
    ((F.leaky_relu,), "leaky_relu", _leaky),
    ((F.softmax, torch.softmax, Tensor.softmax), "softmax", lambda args, kwargs: None),
):
    for _fn in _fns:
        FUNCTIONS[_fn] = (_name, _record)


_QUIET = threading.local()  # inside any probe's own recomputation on this thread (a nested probe's too)


def _quiet() -> bool:
    return getattr(_QUIET, "depth", 0) > 0


def _is_activation_module(module: nn.Module) -> bool:
    return activation_of(module) is not None or isinstance(module, (nn.Softmax, nn.GELU, nn.SiLU, nn.Mish))


class Calls(TorchFunctionMode):
    """The mode: hands each activation call (its row name, module, record, input and output) to
    ``seen``; every other call passes straight through."""

    def __init__(self, seen: Callable[[str, str, Activation | None, Tensor, Tensor], None],
                 attended: Callable[[str, tuple, dict], None] | None = None,
                 weighed: Callable[[str, Tensor], None] | None = None):
        super().__init__()
        self.seen, self.attended, self.weighed = seen, attended, weighed
        self.stack: list[tuple[str, nn.Module]] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.names: dict[int, str] = {}
        self.produced: dict[int, tuple[Tensor, str]] = {}  # id(output) -> (the output, its module's name)
        self.handles: list = []

    @contextmanager
    def paused(self):
        """The probe's own recomputations (attention weights, unrolled recurrent layers) are not
        the model's calls: inside this block every call passes straight through, for every probe
        watching on this thread (a probe nested in another's ``with`` block)."""
        _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
        try:
            with torch._C.DisableTorchFunction():  # no mode on this thread sees them, nor pays for them
                yield
        finally:
            _QUIET.depth -= 1

    def start(self, model: nn.Module) -> None:
        """Before the model's forward: name its modules, track the module stack, enter the mode."""
        self.names = {id(m): n for n, m in model.named_modules()}
        self.stack, self.counts, self.produced = [], {}, {}
        # the module hooks below are the process's, seen by every thread: keep to this one (two
        # probes training in two threads, as the lab's sessions do, would fill each other's stack)
        self.thread = threading.get_ident()
        self.handles = [nn.modules.module.register_module_forward_pre_hook(torch.compiler.disable(self._push)),
                        nn.modules.module.register_module_forward_hook(torch.compiler.disable(self._pop))]
        self.__enter__()

    def stop(self) -> None:
        """After the forward (or when the probe is detached): leave the mode, remove the hooks."""
        if self.handles:
            self.__exit__(None, None, None)
            for h in self.handles:
                h.remove()
            self.handles = []
            self.produced = {}  # drop the references to this forward's outputs

    @property
    def active(self) -> bool:
        return bool(self.handles)

    def _push(self, module, inputs) -> None:
        if threading.get_ident() == self.thread:
            self.stack.append((self.names.get(id(module), type(module).__name__), module))

    def _pop(self, module, inputs, output) -> None:
        if self.stack and threading.get_ident() == self.thread:
            name, _ = self.stack.pop()
            if isinstance(output, Tensor):
                self.produced[id(output)] = (output, name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FUNCTIONS or func is F.scaled_dot_product_attention:
            self._after(func, args, kwargs, out)
        return out

    @torch.compiler.disable  # the probe's own bookkeeping stays out of a compiled graph
    def _after(self, func, args: tuple, kwargs: dict, out) -> None:
        """Hand a call of an activation (or of ``scaled_dot_product_attention``) to the probe."""
        if func is F.scaled_dot_product_attention and self.attended is not None and not _quiet() \
                and not (self.stack and isinstance(self.stack[-1][1], nn.MultiheadAttention)):  # that has its own hook
            self.attended(self._name(self.stack[-1][0] if self.stack else "", "attention"), args, kwargs)
            return
        entry = FUNCTIONS.get(func)
        if entry is None or _quiet() or not isinstance(out, Tensor) or not args or not isinstance(args[0], Tensor):
            return
        if self.stack and _is_activation_module(self.stack[-1][1]):
            return  # nn.ReLU and friends: their own module hook sees them
        fn, record = entry
        if fn == "softmax" and self.weighed is not None and self._over_keys(args, kwargs):
            self.weighed(self._name(self._attention_module(), "attention"), args[0])
            return
        made = self.produced.get(id(args[0]))
        where = made[1] if made is not None and made[0] is args[0] else self.stack[-1][0] if self.stack else ""
        z = args[0] if out is not args[0] else None  # in place (relu_): the input is gone
        self.seen(self._name(where, fn), fn, record(args, kwargs), z, out)

    def _attention_module(self) -> str | None:
        """The innermost running module whose class name says it is attention, or None."""
        return next((name for name, module in reversed(self.stack) if "Attention" in type(module).__name__), None)

    def _over_keys(self, args: tuple, kwargs: dict) -> bool:
        """A softmax over the keys of (batch, heads, queries, keys) logits inside an attention module."""
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return args[0].dim() == 4 and dim in (-1, 3) and self._attention_module() is not None \
            and not any(isinstance(m, nn.MultiheadAttention) for _, m in self.stack)  # that has its own hook

    def _name(self, where: str, fn: str) -> str:
        """"where:fn", then "where:fn#2", ... for further calls under the same name in one forward."""
        k = self.counts.get((where, fn), 0) + 1
        self.counts[(where, fn)] = k
        return f"{where or 'model'}:{fn}" + (f"#{k}" if k > 1 else "")
