"""Why a module of the model has no row: what ``Probe.skipped`` lists."""

from __future__ import annotations

from torch import nn

from ..layers import NORMS, PARAMETRIC, activation_of
from .rows.tables import TABLES


def skipped(model: nn.Module, covers: dict[int, str | None], chosen) -> list[tuple[str, str]]:
    """(module name, why) for every module no row covers; ``covers``: the kinds' ``covers()`` together."""
    out = []
    for name, module in model.named_modules():
        why = covers.get(id(module), "")
        if why is None:
            continue
        if not why and chosen is not None and isinstance(module, (*PARAMETRIC, *NORMS, *TABLES, nn.MultiheadAttention,
                                                                  nn.RNNBase)):
            why = f"{type(module).__name__}: not chosen by layers={chosen!r}"
        why = why or _why(module)
        if why is not None:
            out.append((name or type(module).__name__, why))
    return out


def _why(module: nn.Module) -> str | None:
    """Why a module has no row of its own; None for a container whose parts are judged one by one."""
    kind = type(module).__name__
    if isinstance(module, nn.Identity):
        return f"{kind}: passes its input on unchanged"
    if activation_of(module) is not None:
        return f"{kind}: an activation that follows no probed layer"
    if any(True for _ in module.children()):
        return None
    if any(True for _ in module.parameters(recurse=False)):
        return f"{kind}: a module with weights of a type the probes do not know"
    return f"{kind}: no weights and no nonlinearity"
