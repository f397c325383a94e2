"""Several processes (DistributedDataParallel): each rank's sums made those of the global batch.

Generic over the rows' named state (``state.State``): one all-reduce (SUM) for every summed scalar
and tensor of every row, then each element divided by W**scale; one all-reduce (MAX) for the flags.
Each rank's loss is the mean over its own batch and DDP averages the gradients, so the global
batch's dL/dh is each rank's divided by W: a gradient's first sum has scale 1 and its second scale 2;
a count every rank makes of the same steps (the sampled steps) has scale 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sums import Sums

Collective = Callable[[torch.Tensor, bool], None]
"""All-reduce a tensor in place across the ranks: its sum, or with ``True`` its largest value."""


def ranks() -> tuple[int, int]:
    """(world size, rank) of torch.distributed's default group; (1, 0) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def all_reduce(t: torch.Tensor, maximum: bool = False) -> None:
    """torch.distributed's all-reduce of ``t`` in place over the default group: the sum, or the largest."""
    import torch.distributed as dist

    dist.all_reduce(t, op=dist.ReduceOp.MAX if maximum else dist.ReduceOp.SUM)


def max_over_ranks(value: float, device: torch.device, collective: Collective = all_reduce) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    collective(t, True)
    return float(t.item())


def _powers(rows, n: int) -> list[int]:
    """Per element of the buffer, the power of W that divides it after the sum."""
    powers = [0] * n
    for row in rows:
        specs = row.specs
        for name, at in row.at.items():
            scale = specs[name].scale
            for i in range(specs[name].size):
                powers[at + i] = scale[i % len(scale)]
    return powers


def reduce(rows: list, sums: Sums, world: int, collective: Collective = all_reduce) -> None:
    """Make every row's state the global batch's (two collectives), in place. ``collective(t, maximum)``
    all-reduces ``t`` in place (``all_reduce``; a test passes its own group of threads)."""
    sums.settle()
    n = len(sums.host)
    summed = [(row, name, t) for row in rows for name, t in row.tensors.items()
              if t is not None and row.specs[name].op == "sum"]
    flat = torch.cat([sums.total + torch.tensor(sums.host, dtype=torch.float64, device=sums.device),
                      *[t.to(torch.float64).reshape(-1) for _, _, t in summed]])
    collective(flat, False)
    powers = _powers(rows, n)
    for row, name, t in summed:
        scale = row.specs[name].scale
        powers += [scale[i % len(scale)] for i in range(t.numel())]
    if any(powers):
        flat /= float(world) ** torch.tensor(powers, dtype=torch.float64, device=flat.device)
    sums.total.copy_(flat[:n])
    sums.host = [0.0] * n
    at = n
    for row, name, t in summed:
        row.tensors[name] = flat[at:at + t.numel()].reshape(t.shape).to(t.dtype)
        at += t.numel()
    flags = [(row, name, t) for row in rows for name, t in row.tensors.items()
             if t is not None and row.specs[name].op == "max"]
    if flags:
        alive = torch.cat([t.to(torch.uint8).reshape(-1) for _, _, t in flags])
        collective(alive, True)
        at = 0
        for row, name, t in flags:
            t.copy_(alive[at:at + t.numel()].reshape(t.shape).to(t.dtype))
            at += t.numel()
