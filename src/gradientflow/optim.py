"""Optimisers by the seeds' names, mapped onto ``torch.optim``; gradient clipping.

The seeds write the hyper-parameters as alpha (learning rate), mu (momentum / first-moment
decay), rho (second-moment decay) and delta (the small constant under the square root).
``tests/reference.py`` implements each seed formula as a plain loop and the tests prove,
step by step, that the torch optimiser below performs exactly that update.

=========  ====================================================  ====================================
name       update (seed claim)                                   torch.optim
=========  ====================================================  ====================================
sgd        theta <- theta - alpha g                               SGD(lr=alpha)
momentum   v <- mu v + g;  theta <- theta - alpha v (C10)         SGD(lr=alpha, momentum=mu)
nesterov   v <- mu v + g;  theta <- theta - alpha (g + mu v)      SGD(..., nesterov=True)
adagrad    r <- r + g^2;  theta <- theta - alpha g/(sqrt r + delta) (C11)   Adagrad(lr, eps=delta)
rmsprop    r <- rho r + (1-rho) g^2; same step (C12)              RMSprop(lr, alpha=rho, eps=delta)
adam       v <- mu v + (1-mu) g; r <- rho r + (1-rho) g^2;        Adam(lr, betas=(mu, rho), eps=delta)
           theta <- theta - alpha v~/(sqrt r~ + delta),
           v~ = v/(1-mu^t), r~ = r/(1-rho^t) (C13)
adamw      adam with decoupled weight decay (Loshchilov & Hutter 2019)   AdamW
=========  ====================================================  ====================================

Weight decay (L2) is torch's: added to g for all but adamw, which shrinks theta directly.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
USES_MU = ("momentum", "nesterov", "adam", "adamw")
USES_RHO = ("rmsprop", "adam", "adamw")
DEFAULT_MU = 0.9  # the seeds' usual value (C10, C13)
DEFAULT_RHO = {"rmsprop": 0.99, "adam": 0.999, "adamw": 0.999}  # C13's 0.999; RMSProp as in CS231n
DEFAULT_DELTA = {"adagrad": 1e-10, "rmsprop": 1e-8, "adam": 1e-8, "adamw": 1e-8}  # torch's defaults


def make(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, mu: float | None = None,
         rho: float | None = None, delta: float | None = None, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch optimiser for a seed name (table above); None means the default for that optimiser."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if mu is not None and name not in USES_MU:
        raise ValueError(f"momentum (mu) does not apply to {name}; it applies to {', '.join(USES_MU)}")
    if rho is not None and name not in USES_RHO:
        raise ValueError(f"rho does not apply to {name}; it applies to {', '.join(USES_RHO)}")
    if delta is not None and name not in DEFAULT_DELTA:
        raise ValueError(f"delta (eps) does not apply to {name}; it applies to {', '.join(DEFAULT_DELTA)}")
    mu = DEFAULT_MU if mu is None else mu
    rho = DEFAULT_RHO.get(name) if rho is None else rho
    delta = DEFAULT_DELTA.get(name) if delta is None else delta
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=mu, nesterov=name == "nesterov", weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=delta, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=rho, eps=delta, weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=(mu, rho), eps=delta, weight_decay=weight_decay)


def clip_(params: Iterable[torch.nn.Parameter], *, norm: float | None = None,
          value: float | None = None) -> torch.Tensor:
    """Clip gradients in place and return the total gradient norm *before* clipping (C3).

    By value: g <- clamp(g, -value, value).  By norm: g <- g * min(1, norm / ||g||), with
    ||g|| the 2-norm over all parameters together (Pascanu et al. 2013). Both may be given:
    value first, then norm. The norm is computed either way; it is what the NaN guard reads.
    """
    params = [p for p in params if p.grad is not None]
    if value is not None:
        torch.nn.utils.clip_grad_value_(params, value)
    if norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])
