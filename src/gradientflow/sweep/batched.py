"""Many small same-shaped nets trained at once in one process: ``torch.func.stack_module_state``
stacks their weights along a new leading axis and one forward and one backward run for all K of
them (each Linear as one batched product with its bias, ``baddbmm``; nets with other layers under
``vmap``), each net with its own seed (weights and sample order), learning rate, momentum, weight
decay and initialiser.

A cell can join a batch when its config asks only for what this trainer does exactly as
``train.fit`` does: plain SGD, momentum or Nesterov (torch's ``SGD`` update, written out below on the
stacked weights), a constant rate, no clipping, no probes, on the CPU, on a classification set.
Cells that agree on every other field (data, depth, width, activation, epochs, batch size, ...)
form one batch. Each net sees the batches ``train.fit`` would show it (``train.epoch_order`` with
its seed) and its run is stored like one that ``fit`` wrote (per-step loss and rate, the gradient
norm every ``grad_norm_every`` steps, the epochs' train and test means, the status), so its numbers equal
the one-by-one run's up to float rounding (batched matrix products add in another order).

What differs: a batch keeps no checkpoints (a killed batch is trained again), denormal numbers
(below 1.2e-38, where a collapsed net's signal ends up) are flushed to zero, the NaN guard
checks each net's losses at the end of every epoch and names the step, not the layer, and each
cell's ``seconds`` is its batch's time divided by K.
"""

from __future__ import annotations

import copy
import math
import time

import torch

from .. import data as datasets
from ..config import TrainConfig
from ..evaluation import epoch_row, loss, split_sums
from ..guard import first_nonfinite
from ..records import MetricRows, Summary
from ..trainer import epoch_order

OPTIMIZERS = ("sgd", "momentum", "nesterov")
# fields that may differ between the nets of one batch; every other field must be equal
PER_NET = ("seed", "lr", "momentum", "weight_decay", "init", "std", "gain", "sigma_w2", "sigma_b2", "schedule",
           "warmup_steps", "step_size", "gamma")


def refusal(cfg: TrainConfig) -> str | None:
    """Why ``cfg`` cannot be trained in a batch (one line), or None when it can."""
    if cfg.data in datasets.REGRESSION:  # its epoch rows count correct predictions: classes only
        return f"data={cfg.data} (batched: classification sets; a regression set trains cell by cell)"
    if cfg.optimizer not in OPTIMIZERS:
        return f"optimizer={cfg.optimizer} (batched: {', '.join(OPTIMIZERS)})"
    if cfg.clip_norm is not None or cfg.clip_value is not None:
        return "gradient clipping (batched: none)"
    if cfg.probe:
        return "probe=true (batched: no probes)"
    if cfg.device != "cpu":
        return f"device={cfg.device} (batched: cpu)"
    return None


def batch_key(cfg: TrainConfig) -> tuple:
    """Cells with the same key train in one batch: every field but ``PER_NET``."""
    return tuple(sorted((k, repr(v)) for k, v in cfg.model_dump().items() if k not in PER_NET))


def _per_net(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """A [K] column broadcast against a stacked [K, ...] tensor."""
    return torch.tensor(values, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def rates(cfg: TrainConfig, total: int) -> list[float]:
    """The rate of each of ``total`` steps under ``cfg``'s schedule, read from the torch scheduler that
    ``train.fit`` steps (``optim.schedule``), driven here on a one-parameter SGD."""
    from .. import optim

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = optim.schedule(cfg.parts.optimizer, opt, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        if sched is not None:
            opt.step()  # no gradient: changes nothing, and keeps the scheduler's order check quiet
            sched.step()
    return out


class _SGD:
    """torch's SGD on stacked weights, one rate schedule, momentum and weight decay per net:
    g <- g + wd theta; v <- mu v + g (v = g at the first step); g <- g + mu v (Nesterov) or v;
    theta <- theta - alpha_t g (the ``optim`` table's sgd, momentum (C10) and nesterov rows)."""

    def __init__(self, cfgs: list[TrainConfig], params: list[torch.Tensor], total: int):
        from ..optim import DEFAULT_MU

        self.nesterov = cfgs[0].optimizer == "nesterov"
        mu = [0.0 if c.optimizer == "sgd" else DEFAULT_MU if c.momentum is None else c.momentum for c in cfgs]
        constant = all(c.schedule == "constant" and c.warmup_steps <= 1 for c in cfgs)
        self.rates = None if constant else torch.tensor([rates(c, total) for c in cfgs], dtype=torch.float64)  # [K, T]
        self.t = 0
        self.lr = [_per_net([c.lr for c in cfgs], p) for p in params]
        self.mu = [_per_net(mu, p) for p in params] if any(mu) else None
        self.wd = [_per_net([c.weight_decay for c in cfgs], p) for p in params] \
            if any(c.weight_decay for c in cfgs) else None
        self.buffers: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """One update of every net (a diverged one goes on with its non-finite weights, touching no other).
        In place, as torch's single-tensor SGD does it: at these sizes the update, which reads and writes
        every stacked weight a few times a step, is a quarter to a third of the step's time."""
        grads = list(grads)  # fresh tensors from autograd: changed in place below
        if self.wd is not None:
            for g, p, wd in zip(grads, params, self.wd):
                g.add_(p * wd)
        if self.mu is not None:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                for b, g, mu in zip(self.buffers, grads, self.mu):
                    b.mul_(mu).add_(g)
            if self.nesterov:
                for g, b, mu in zip(grads, self.buffers, self.mu):
                    g.add_(b * mu)
            else:
                grads = self.buffers
        if self.rates is not None:  # this step's rate of each net
            now = self.rates[:, self.t].tolist()
            self.lr = [_per_net(now, p) for p in params]
        self.t += 1
        for p, g, lr in zip(params, grads, self.lr):
            p.sub_(g * lr)

    def rate(self, i: int, step: int) -> float:
        """Net ``i``'s rate at ``step`` (1-based), as logged."""
        return float(self.rates[i, step - 1]) if self.rates is not None else self.lr[0].flatten()[i].item()


def train(cfgs: list[TrainConfig], *, runs: list | None = None, network=None, on_epoch=None) -> list[Summary]:
    """Train the nets of ``cfgs`` (one batch: same ``batch_key``, no ``refusal``) together; with
    ``runs`` (a ``store.Run`` per config, or None), store each one's metrics and status there.

    ``network(cfg, dataset) -> nn.Module`` builds each net (default ``job.network``: an experiment may
    build a variant of it, the same for every net of the batch). ``on_epoch(epoch, weights)`` is called
    before the first step (epoch 0) and after every epoch (1, 2, ...) with the stacked weights, a dict
    name -> [K, ...] tensor (read them, do not change them): an experiment's own per-epoch measure."""
    if not cfgs:
        return []
    torch.set_flush_denormal(True)  # collapsed nets (normal 0.01 at depth 20) compute in denormals, 2x slower here
    try:
        return _train(cfgs, runs, network, on_epoch)
    finally:
        torch.set_flush_denormal(False)  # torch's default


def _train(cfgs: list[TrainConfig], runs, network, on_epoch) -> list[Summary]:
    from torch.func import stack_module_state

    from .. import job

    keys = {batch_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ValueError("the configs of one batch must agree on every field but " + ", ".join(PER_NET))
    for cfg in cfgs:
        why = refusal(cfg)
        if why is not None:
            raise ValueError(f"cannot train in a batch: {why}")
    started = time.perf_counter()
    first = cfgs[0]
    d = job.dataset(first)
    nets = [(network or job.network)(c, d) for c in cfgs]
    weights, buffers = stack_module_state(nets)
    names = list(weights)
    params = [weights[n] for n in names]
    if on_epoch is not None:
        on_epoch(0, weights)
    forward, forward_shared = _forwards(nets[0], names, buffers, len(cfgs))
    k, n = len(cfgs), len(d.y_train)
    per_epoch = math.ceil(n / first.batch_size)
    sgd = _SGD(cfgs, params, per_epoch * first.epochs)
    ended_at = [None] * k  # the diverged nets' last good step
    history: list[list[dict]] = [[] for _ in cfgs]
    logged = [MetricRows() for _ in cfgs]
    step = 0
    for epoch in range(first.epochs):
        orders = torch.stack([epoch_order(n, c.seed, epoch) for c in cfgs])  # [K, n]
        losses, norms, loss_sum, correct = [], [], torch.zeros(k, dtype=torch.float64), torch.zeros(k)
        for batch in range(per_epoch):
            idx = orders[:, batch * first.batch_size:(batch + 1) * first.batch_size]
            xb, yb = d.x_train[idx], d.y_train[idx]  # [K, B, ...], [K, B]
            out = forward(params, xb)
            per_net = loss(out, yb)  # [K]
            grads = torch.autograd.grad(per_net.sum(), params)
            step += 1
            if (step - 1) % first.grad_norm_every == 0:
                norms.append((step, torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()))
            sgd.step(params, grads)
            losses.append(per_net.detach())
            loss_sum += per_net.detach().double() * yb.shape[1]
            correct += (out.detach().argmax(-1) == yb).sum(1)
        values = torch.stack(losses).T.tolist()  # [K][per_epoch], read once per epoch: the guard's only sync
        with torch.no_grad():
            test = (split_sums(lambda x: forward_shared(params, x), d.x_test, d.y_test) / len(d.y_test)).tolist()
        norm_values = [(s, v.tolist()) for s, v in norms]
        loss_sums, corrects = loss_sum.tolist(), correct.tolist()
        first_step = step - per_epoch + 1
        for i in range(k):
            if ended_at[i] is not None:
                continue
            bad = first_nonfinite(values[i])
            good = per_epoch if bad is None else bad  # the epoch's steps before the first non-finite loss
            if bad is not None:
                ended_at[i] = first_step + bad - 1
            steps = list(range(first_step, first_step + good))
            logged[i].extend(steps + steps, [epoch] * (2 * good), ["loss"] * good + ["lr"] * good,
                             values[i][:good] + [sgd.rate(i, s) for s in steps])
            for s, v in norm_values:
                if s < first_step + good:
                    logged[i].add(s, epoch, "train", "grad_norm", v[i])
            if ended_at[i] is not None:
                continue
            row = epoch_row(epoch + 1, step, (loss_sums[i], corrects[i], n), tuple(test[i]))
            history[i].append(row)
            logged[i].add_epoch(row, epoch)
        if on_epoch is not None:
            on_epoch(epoch + 1, weights)
        if all(e is not None for e in ended_at):
            break
    seconds = (time.perf_counter() - started) / k
    summaries = []
    for i in range(k):
        done = step if ended_at[i] is None else ended_at[i]
        status, message = ("finished", "") if ended_at[i] is None else (
            "diverged", f"non-finite loss at step {done + 1} (found by the batched trainer, which names the step "
                        "but not the layer: train this cell alone to locate it)")
        summary = Summary.from_history(status, done, per_epoch, seconds, history[i],
                                       str(runs[i].path) if runs else None, message)
        if runs:
            runs[i].append_metrics(done, logged[i].take())
            runs[i].set_status(status, **summary.stored())
        summaries.append(summary)
    return summaries


def _forwards(net: torch.nn.Module, names: list[str], buffers: dict, k: int):
    """(forward(params, x [K, B, ...]), forward_shared(params, x [B, ...])) of the K stacked nets.

    An ``mlp`` of Linear (or Maxout) layers and parameter-free elementwise activations runs each Linear as one
    ``baddbmm`` over the stack (the bias added inside the product: under ``vmap`` a Linear becomes a
    batched product and a separate addition, 3.5x slower here); any other net runs through ``vmap``
    of ``functional_call`` on a weightless copy of the first net."""
    from torch.func import functional_call, vmap

    from ..activations import Maxout

    children = list(net.named_children()) if isinstance(net, torch.nn.Sequential) else []
    fused = bool(children) and all(isinstance(m, (torch.nn.Linear, Maxout)) or
                                   not any(True for _ in m.parameters(recurse=True)) for _, m in children)
    if fused:
        index = {n: i for i, n in enumerate(names)}

        def linear(params, h, name):
            w, b = params[index[f"{name}.weight"]], index.get(f"{name}.bias")
            return torch.bmm(h, w.transpose(1, 2)) if b is None else \
                torch.baddbmm(params[b].unsqueeze(1), h, w.transpose(1, 2))

        def forward(params, x):
            h = x.flatten(2)
            for name, m in children:
                if isinstance(m, torch.nn.Linear):
                    h = linear(params, h, name)
                elif isinstance(m, Maxout):  # its pieces' one Linear, then the max over each unit's pieces
                    h = linear(params, h, f"{name}.linear").unflatten(-1, (m.out_features, m.pieces)).amax(-1)
                else:
                    h = m(h)  # elementwise: the stack's extra axis changes nothing
            return h

        return forward, lambda params, x: forward(params, x.unsqueeze(0).expand(k, *x.shape))
    shell = copy.deepcopy(net).to("meta")

    def one(p, b, x):
        return functional_call(shell, (dict(zip(names, p)), b), (x,))

    batched, shared = vmap(one, in_dims=(0, 0, 0)), vmap(one, in_dims=(0, 0, None))
    return (lambda params, x: batched(params, buffers, x)), (lambda params, x: shared(params, buffers, x))
