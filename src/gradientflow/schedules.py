"""Learning-rate schedules (C20), built from ``torch.optim.lr_scheduler`` and stepped once per
optimiser step. With alpha_0 the base rate and t the step:

=============  ============================================  ==============================
name           alpha_t / alpha_0                             torch.optim.lr_scheduler
=============  ============================================  ==============================
constant       1                                             (none)
step           gamma ** floor(t / step_size)                 StepLR
exponential    gamma ** t                                    ExponentialLR
cosine         (1 + cos(pi t / T)) / 2, T = total steps      CosineAnnealingLR(eta_min=0)
warmup         min(1, (t + 1) / W)                           LinearLR(start_factor=1/W, total_iters=W-1)
=============  ============================================  ==============================

``warmup_steps`` W > 0 puts the linear warm-up in front of any of the others (SequentialLR);
the schedule named ``warmup`` is the warm-up followed by a constant rate.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup")


def make(name: str, optimizer: torch.optim.Optimizer, *, total_steps: int, step_size: int | None = None,
         gamma: float | None = None, warmup_steps: int = 0) -> lr_scheduler.LRScheduler | None:
    """The scheduler for a name (table above), or None for a constant rate without warm-up.

    Defaults: ``step`` divides the rate by 10 (gamma 0.1) every third of the run; ``exponential``
    uses gamma = 0.01 ** (1 / total_steps), so the rate falls 100-fold over the run.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    step_size = step_size or max(1, total_steps // 3)
    if gamma is None:
        gamma = 0.1 if name == "step" else 0.01 ** (1.0 / max(1, total_steps))
    if name == "warmup" and warmup_steps == 0:
        warmup_steps = max(1, total_steps // 20)  # 5% of the run unless told otherwise
    if name == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    elif name == "exponential":
        main = lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    elif name == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=0.0)
    else:
        main = None
    if warmup_steps <= 1:  # one warm-up step at the full rate is no warm-up
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0,
                                 total_iters=warmup_steps - 1)
    if main is None:
        return warm
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])
