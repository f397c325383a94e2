"""Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``): their gates and their gradients through time.

The fused kernels hide both the gates and the hidden state at each step, so on a sampled step the
probe's forward hook unrolls the module again, beside it, from its own weights and the same input
and initial state (``unroll``); the module itself runs exactly as it would unprobed. The unrolled
copy gives, per layer and direction:

- per gate, its value and the share of its pre-activations in the gate nonlinearity's saturated
  region (|f'| < 5% of its max, the catalog's region: C1 inside the cell). The gates, as torch
  documents them: LSTM i, f, g, o = sigma, sigma, tanh, sigma of x W_ih^T + b_ih + h W_hh^T + b_hh,
  c' = f c + i g, h' = o tanh(c') (times W_hr with ``proj_size``); GRU r, z = sigma(...),
  n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)), h' = (1 - z) n + z h; RNN h' = tanh or relu(...);
- ``time_grad``: for t = 1..T in the order the direction processes the sequence, the norm of
  dL_T/dh_t, the gradient that enters at the last processed step (the model's gradient of the
  module's last output and of its final states) as it reaches the hidden state at step t
  (Pascanu, Mikolov & Bengio 2013, eq. 5: a product of T - t Jacobians). Its fall from t = T to
  t = 1 is the vanishing gradient along the time axis, C2's cousin. It is computed in the backward
  pass from the gradients the model's own backward hands to the module's outputs, by backpropagating
  them through the unrolled copy (``torch.autograd.grad``), so it is exact for what the model was
  given, not an estimate.

Cells (``nn.LSTMCell``, ``GRUCell``, ``RNNCell``), stepped by the model's own loop, get their gate
rows from each call (``cell_gates``); their gradients through time are the model's loop's business
and are not measured. Not modelled (the module is then listed in ``probe.skipped`` with why):
``PackedSequence`` inputs.
With ``dropout`` between layers the unrolled copy runs without it (its random masks are the
module's own), so the statistics are those of the network without the dropout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# per mode: the gates, each with its nonlinearity (a catalog name), in the order torch stacks them
GATES = {"LSTM": (("input", "sigmoid"), ("forget", "sigmoid"), ("cell", "tanh"), ("output", "sigmoid")),
         "GRU": (("reset", "sigmoid"), ("update", "sigmoid"), ("new", "tanh")),
         "RNN_TANH": (("hidden", "tanh"),), "RNN_RELU": (("hidden", "relu"),)}
KINDS = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)


def mode_of(module: nn.Module) -> str:
    """"LSTM", "GRU", "RNN_TANH" or "RNN_RELU" for a recurrent layer or cell."""
    if isinstance(module, nn.RNNBase):
        return module.mode
    if isinstance(module, nn.RNNCell):
        return "RNN_TANH" if module.nonlinearity == "tanh" else "RNN_RELU"
    return "LSTM" if isinstance(module, nn.LSTMCell) else "GRU"


def row_names(module: nn.Module) -> list[str | None]:
    """The suffixes of a module's (layer, direction) rows, in torch's order: l0, l0_reverse, l1, ...;
    a cell has one row, named after the cell itself (None)."""
    if isinstance(module, CELLS):
        return [None]
    dirs = ("", "_reverse") if module.bidirectional else ("",)
    return [f"l{layer}{d}" for layer in range(module.num_layers) for d in dirs]


@torch.no_grad()
def cell_gates(cell: nn.Module, args: tuple, kwargs: dict) -> Tensor | None:
    """One step of an ``nn.LSTMCell``/``GRUCell``/``RNNCell``, stepped by the model's own loop: its
    gate pre-activations (N, gates*H), with the same formulas as ``unroll``; None without a tensor input."""
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if not isinstance(x, Tensor):
        return None
    h = hx[0] if isinstance(hx, tuple) else hx
    if h is None:
        h = x.new_zeros(*x.shape[:-1], cell.hidden_size)
    xi = torch.nn.functional.linear(x.detach(), cell.weight_ih, cell.bias_ih)
    hh = torch.nn.functional.linear(h.detach(), cell.weight_hh, cell.bias_hh)
    if isinstance(cell, nn.GRUCell):
        ir, iz, i_n = xi.chunk(3, -1)
        hr, hz, hn = hh.chunk(3, -1)
        return torch.cat([ir + hr, iz + hz, i_n + torch.sigmoid(ir + hr) * hn], -1)
    return xi + hh


class Unrolled:
    """One forward call of a recurrent module, recomputed step by step (see the module docstring).

    ``states[k]``: the hidden states h_1..h_T of row k, in processing order, as graph nodes whose
    gradients ``time_grads`` asks for; ``gates[k][g]``: gate g's pre-activations (T, N, H) and
    values; ``outputs``: the recomputed (output, h_n[, c_n]), shaped as the module returns them."""

    def __init__(self, states, gates, outputs, hidden_size):
        self.states, self.gates, self.outputs, self.hidden_size = states, gates, outputs, hidden_size

    def time_grads(self, grads: list[Tensor | None]) -> Tensor:
        """(rows, T) norms of dL_T/dh_t from the gradients the module's outputs received: only the
        last processed step of ``output`` is kept (time T for the forward direction, time 1 for
        the reverse one), with the final states' gradients."""
        out, *finals = self.outputs
        pairs = []
        g_out = grads[0]
        if g_out is not None:
            last = torch.zeros_like(g_out)
            H = self.hidden_size
            last[-1, ..., :H] = g_out[-1, ..., :H]  # (T, N, D*H) time-major here
            if g_out.shape[-1] > H:
                last[0, ..., H:] = g_out[0, ..., H:]
            pairs.append((out, last))
        pairs += [(o, g) for o, g in zip(finals, grads[1:]) if g is not None]
        nodes = [h for row in self.states for h in row]
        found = torch.autograd.grad([o for o, _ in pairs], nodes, [g for _, g in pairs], allow_unused=True)
        T = len(self.states[0])
        norms = [torch.linalg.vector_norm(g).double() if g is not None else nodes[0].new_zeros((), dtype=torch.float64)
                 for g in found]
        return torch.stack(norms).reshape(len(self.states), T)


def unroll(module: nn.RNNBase, args: tuple, kwargs: dict) -> Unrolled | None:
    """Recompute ``module(*args, **kwargs)`` step by step (no gradient w.r.t. the weights or input;
    the initial states are leaves that need one, so every h_t is a node of a small graph of its own).
    None for a call this does not model (a PackedSequence)."""
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if not isinstance(x, Tensor):
        return None
    mode, H, L = module.mode, module.hidden_size, module.num_layers
    D = 2 if module.bidirectional else 1
    H_out = module.proj_size if getattr(module, "proj_size", 0) else H
    x = x.detach()
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1)
    elif module.batch_first:
        x = x.transpose(0, 1)
    T, N = x.shape[0], x.shape[1]
    if isinstance(hx, tuple):
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    if h0 is None:
        h0 = x.new_zeros(L * D, N, H_out)
    elif unbatched:
        h0 = h0.unsqueeze(1)
    if mode == "LSTM":
        c0 = x.new_zeros(L * D, N, H) if c0 is None else (c0.unsqueeze(1) if unbatched else c0)
    h0 = h0.detach().clone().requires_grad_(True)
    c0 = c0.detach().clone().requires_grad_(True) if c0 is not None else None
    w = {name: p.detach() for name, p in module.named_parameters()}
    layer_in = x
    states, gates, h_last, c_last = [], [], [], []
    for layer in range(L):
        outs = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            k = layer * D + d
            get = lambda p: w.get(f"{p}_l{layer}{sfx}")  # noqa: E731
            w_ih, w_hh, b_ih, b_hh, w_hr = get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")
            xi = torch.nn.functional.linear(layer_in, w_ih, b_ih)  # (T, N, gates*H): the input side at once
            h, c = h0[k], c0[k] if c0 is not None else None
            seq, pre = [], []
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                hh = torch.nn.functional.linear(h, w_hh, b_hh)
                if mode == "LSTM":
                    z = xi[t] + hh
                    i, f, g, o = z.chunk(4, -1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    if w_hr is not None:
                        h = h @ w_hr.t()
                    pre.append(z.detach())
                elif mode == "GRU":
                    ir, iz, i_n = xi[t].chunk(3, -1)
                    hr, hz, hn = hh.chunk(3, -1)
                    r, zg = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                    n_pre = i_n + r * hn
                    h = (1 - zg) * torch.tanh(n_pre) + zg * h
                    pre.append(torch.cat([ir + hr, iz + hz, n_pre], -1).detach())
                else:
                    z = xi[t] + hh
                    h = torch.tanh(z) if mode == "RNN_TANH" else torch.relu(z)
                    pre.append(z.detach())
                seq.append(h)
            states.append(seq)
            gates.append(torch.stack(pre))  # (T, N, gates*H), processing order
            h_last.append(h)
            c_last.append(c)
            outs.append(torch.stack(seq if d == 0 else seq[::-1]))  # back to sequence order
        layer_in = torch.cat(outs, -1) if D == 2 else outs[0]
    out = layer_in
    hn = torch.stack(h_last)
    outputs = [out, hn] + ([torch.stack(c_last)] if mode == "LSTM" else [])
    return Unrolled(states, gates, outputs, H_out)


def module_outputs(module: nn.RNNBase, output) -> list[Tensor]:
    """The module's own (output, h_n[, c_n]) from what its forward returned, time-major and batched
    like the unrolled copy's (so gradients line up)."""
    out, hx = output
    finals = list(hx) if isinstance(hx, tuple) else [hx]
    return [out, *finals]


def align(module: nn.RNNBase, grads: list[Tensor | None], unbatched: bool) -> list[Tensor | None]:
    """Gradients of the module's outputs, reshaped to the unrolled copy's layout."""
    out = []
    for k, g in enumerate(grads):
        if g is not None:
            if unbatched:
                g = g.unsqueeze(1)
            elif k == 0 and module.batch_first:
                g = g.transpose(0, 1)
        out.append(g)
    return out
