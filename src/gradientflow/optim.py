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
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from . import schedules
from .schedules import SCHEDULES

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
USES_MU = ("momentum", "nesterov", "adam", "adamw")
USES_RHO = ("rmsprop", "adam", "adamw")
DEFAULT_MU = 0.9  # the seeds' usual value (C10, C13)
DEFAULT_RHO = {"rmsprop": 0.99, "adam": 0.999, "adamw": 0.999}  # C13's 0.999; RMSProp as in CS231n
DEFAULT_DELTA = {"adagrad": 1e-10, "rmsprop": 1e-8, "adam": 1e-8, "adamw": 1e-8}  # torch's defaults
BIAS_CORRECTIONS = ("both", "second", "none")  # Adam's moments corrected: both, only r (v uncorrected), neither


class OptimizerSpec(BaseModel):
    """The optimiser of a run, with its schedule and clipping: a small typed record ``train.fit`` takes.

    ``lr`` is alpha, ``momentum`` is mu (momentum, or Adam's beta1), ``rho`` the second-moment
    decay (RMSProp's alpha, Adam's beta2), ``eps`` is delta; None means the optimiser's default
    (table above). Clipping (``clip_``) and the schedule (``schedules.make``) belong to it as in
    optax's ``chain``. Arguments that do not apply to the optimiser are refused here, once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    optimizer: str = "adam"
    lr: float = Field(1e-3, gt=0, le=1e3)
    momentum: float | None = Field(None, ge=0, lt=1)
    rho: float | None = Field(None, ge=0, lt=1)
    eps: float | None = Field(None, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1e3)
    clip_norm: float | None = Field(None, gt=0)
    clip_value: float | None = Field(None, gt=0)
    schedule: str = "constant"
    step_size: int | None = Field(None, ge=1)
    gamma: float | None = Field(None, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    bias_correction: str = "both"  # adam: "both" (torch's), "second" (the first moment uncorrected) or "none"

    @field_validator("optimizer", "schedule")
    @classmethod
    def _known_name(cls, v: str, info: ValidationInfo) -> str:  # a name of its own: TrainConfig inherits all parts
        allowed = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}[info.field_name]
        if v not in allowed:
            raise ValueError(f"unknown {info.field_name}; expected one of: {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _applies(self) -> "OptimizerSpec":
        if self.momentum is not None and self.optimizer not in USES_MU:
            raise ValueError(f"momentum applies to {', '.join(USES_MU)}, not to optimizer={self.optimizer}")
        if self.rho is not None and self.optimizer not in USES_RHO:
            raise ValueError(f"rho applies to {', '.join(USES_RHO)}, not to optimizer={self.optimizer}")
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"bias_correction={self.bias_correction!r}: expected one of {', '.join(BIAS_CORRECTIONS)}")
        if self.bias_correction != "both" and self.optimizer != "adam":
            raise ValueError(f"bias_correction applies to adam, not to optimizer={self.optimizer}")
        if self.eps is not None and self.optimizer not in DEFAULT_DELTA:
            raise ValueError(f"eps (delta) applies to {', '.join(DEFAULT_DELTA)}, not to optimizer={self.optimizer}")
        return self


def build(spec: OptimizerSpec, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimiser ``spec`` names (table above), with its defaults filled in."""
    name = spec.optimizer
    mu = DEFAULT_MU if spec.momentum is None else spec.momentum
    rho = DEFAULT_RHO.get(name) if spec.rho is None else spec.rho
    delta = DEFAULT_DELTA.get(name) if spec.eps is None else spec.eps
    lr, wd, params = spec.lr, spec.weight_decay, list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=mu, nesterov=name == "nesterov", weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=delta, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=rho, eps=delta, weight_decay=wd)
    if name == "adam" and spec.bias_correction != "both":
        return PartlyCorrectedAdam(params, correct_r=spec.bias_correction == "second", lr=lr, betas=(mu, rho),
                                   eps=delta, weight_decay=wd)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=(mu, rho), eps=delta, weight_decay=wd)


class PartlyCorrectedAdam(torch.optim.Adam):
    """Adam with its first moment's bias correction off, and its second's too unless ``correct_r`` (C13).

    theta <- theta - alpha v' / (sqrt(r') + delta) with v' = v (uncorrected) and r' = r / (1 - rho^t) if
    ``correct_r`` else r (Kingma & Ba 2015, section 3, is the case with both corrected). torch's Adam always
    corrects, computing alpha v~ / (sqrt(r~) + eps); so at step t this runs it with
    alpha' = alpha (1 - mu^t) / c and eps' = delta / c, c = 1 if ``correct_r`` else sqrt(1 - rho^t), which is the
    update above exactly, and restores alpha and eps after the step (a scheduler sees its own rate).
    """

    def __init__(self, params, *, correct_r: bool, **kwargs):
        super().__init__(params, **kwargs)
        self.correct_r = correct_r

    @torch.no_grad()
    def step(self, closure=None):
        saved = []
        for group in self.param_groups:
            mu, rho = group["betas"]
            first = next((p for p in group["params"] if p.grad is not None and self.state[p]), None)
            t = 1 + (int(self.state[first]["step"]) if first is not None else 0)  # the step about to be taken
            c = 1.0 if self.correct_r else (1 - rho ** t) ** 0.5
            saved.append((group["lr"], group["eps"]))
            group["lr"], group["eps"] = group["lr"] * (1 - mu ** t) / c, group["eps"] / c
        try:
            return super().step(closure)
        finally:
            for group, (lr, eps) in zip(self.param_groups, saved):
                group["lr"], group["eps"] = lr, eps


def make(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, mu: float | None = None,
         rho: float | None = None, delta: float | None = None, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch optimiser for a seed name and the seeds' Greek letters (table above); None means the
    default for that optimiser. Checked by ``OptimizerSpec`` (a ValueError for arguments that do not apply)."""
    spec = OptimizerSpec(optimizer=name, lr=lr, momentum=mu, rho=rho, eps=delta, weight_decay=weight_decay)
    return build(spec, params)


def schedule(spec: OptimizerSpec, optimizer: torch.optim.Optimizer, total_steps: int):
    """The learning-rate scheduler ``spec`` asks for over ``total_steps`` (``schedules.make``), or None."""
    return schedules.make(spec.schedule, optimizer, total_steps=total_steps, step_size=spec.step_size,
                          gamma=spec.gamma, warmup_steps=spec.warmup_steps)


def clip_(params: Iterable[torch.nn.Parameter], *, norm: float | None = None,
          value: float | None = None, measure: bool = True) -> torch.Tensor | None:
    """Clip gradients in place and return the total gradient norm *before* clipping (C3).

    By value: g <- clamp(g, -value, value).  By norm: g <- g * min(1, norm / ||g||), with
    ||g|| the 2-norm over all parameters together (Pascanu et al. 2013). Both may be given:
    value first, then norm. Without norm clipping the norm (one fused pass over the gradients)
    is computed only if ``measure``; else None is returned.
    """
    params = [p for p in params if p.grad is not None]
    if value is not None:
        torch.nn.utils.clip_grad_value_(params, value)
    if norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params]) if measure else None
