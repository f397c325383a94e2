"""Attention weights of ``nn.MultiheadAttention`` and of ``F.scaled_dot_product_attention`` calls,
per head, recomputed beside them.

On a sampled step the probe's forward hook takes the module's inputs (query, key, masks) and
recomputes the attention logits and weights without gradients: the module itself runs exactly as
it would without the probe (asking it for its weights would send it down another kernel and change
the training's numbers). Per head it adds up, over the window's queries:

- ``attn_entropy``: the entropy of a query's weights over the keys, in nats (log S when uniform,
  0 when all weight is on one key);
- ``attn_collapsed``: the share of queries whose largest weight exceeds ``COLLAPSED`` (attention
  collapse: the head attends to one key);
- ``attn_logit_std``: the std of the scaled logits q·k / sqrt(d) over the unmasked entries (the
  logit scale that drives the collapse).

Masks are honoured: ``attn_mask`` (boolean, True = masked, or additive float; 2-D or per head),
``key_padding_mask`` and ``is_causal``. Bias-k/v and add-zero-attention are not modelled. For
``scaled_dot_product_attention`` a boolean mask follows that function's own convention (True =
take part), so it is inverted before use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

COLLAPSED = 0.99
SLOTS = 6  # queries, entropy sum, collapsed count, logit sum, logit sum of squares, logit count


def _additive(mask: Tensor | None, dtype) -> Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    return mask.to(dtype)


@torch.no_grad()
def head_logits(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> Tensor | None:
    """The (N, H, L, S) masked, scaled logits of one forward call, on the module's device; None for a
    call this does not model (bias_k, add_zero_attn)."""
    if module.bias_k is not None or module.add_zero_attn:
        return None
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")
    given = {**dict(zip(names, args)), **kwargs}
    q, k = given["query"], given["key"]
    if module.batch_first:
        q, k = q.transpose(0, 1), k.transpose(0, 1)
    if q.dim() == 2:  # unbatched (L, E)
        q, k = q.unsqueeze(1), k.unsqueeze(1)
    L, N, E = q.shape
    S = k.shape[0]
    H, d = module.num_heads, module.head_dim
    if module._qkv_same_embed_dim:
        wq, wk = module.in_proj_weight[:E], module.in_proj_weight[E:2 * E]
    else:
        wq, wk = module.q_proj_weight, module.k_proj_weight
    bq = bk = None
    if module.in_proj_bias is not None:
        bq, bk = module.in_proj_bias[:E], module.in_proj_bias[E:2 * E]
    qh = F.linear(q, wq, bq).reshape(L, N * H, d).transpose(0, 1)  # (N*H, L, d), as the module splits heads
    kh = F.linear(k, wk, bk).reshape(S, N * H, d).transpose(0, 1)
    logits = torch.bmm(qh, kh.transpose(1, 2)) / math.sqrt(d)  # (N*H, L, S)
    mask = _additive(given.get("attn_mask"), logits.dtype)
    if mask is None and given.get("is_causal"):
        mask = _additive(torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1), logits.dtype)
    if mask is not None:
        logits = logits + (mask if mask.dim() == 3 else mask.unsqueeze(0))
    padding = _additive(given.get("key_padding_mask"), logits.dtype)
    if padding is not None:
        logits = logits + padding.reshape(N, 1, 1, S).expand(N, H, 1, S).reshape(N * H, 1, S)
    return logits.reshape(N, H, L, S)


@torch.no_grad()
def sdpa_logits(args: tuple, kwargs: dict) -> Tensor | None:
    """The (batch, H, L, S) masked logits of one ``F.scaled_dot_product_attention(q, k, v, attn_mask,
    dropout_p, is_causal, scale)`` call: logits q k^T * scale (1/sqrt(E) by default) plus the mask,
    as torch documents the function. q is (..., H, L, E); None for fewer than 2 dimensions."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    given = {**dict(zip(names, args)), **kwargs}
    q, k = given["query"].detach(), given["key"].detach()
    if q.dim() < 2:
        return None
    if q.dim() == 2:
        q, k = q.unsqueeze(0), k.unsqueeze(0)
    if k.shape[-3] != q.shape[-3]:  # grouped-query attention: each key head serves several query heads
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = given.get("scale") or 1 / math.sqrt(E)
    logits = (q @ k.transpose(-2, -1)) * scale
    mask = given.get("attn_mask")
    mask = _additive(mask.logical_not() if mask is not None and mask.dtype == torch.bool else mask, logits.dtype)
    if given.get("is_causal"):
        mask = _additive(torch.ones(L, S, dtype=torch.bool, device=q.device).tril().logical_not(), logits.dtype)
    if mask is not None:
        logits = logits + mask
    return logits.reshape(-1, *logits.shape[-3:])


def logit_sums(logits: Tensor) -> Tensor:
    """(H, ``SLOTS``) sums over the batch and queries of (batch, H, L, S) masked logits."""
    weights = torch.softmax(logits, -1)
    entropy = -(weights * torch.log(weights.clamp_min(1e-30))).sum(-1)  # (N, H, L)
    collapsed = (weights.amax(-1) > COLLAPSED).double()
    finite = torch.isfinite(logits)
    shown = torch.where(finite, logits, torch.zeros_like(logits)).double()
    H = logits.shape[1]
    per = lambda t: t.transpose(0, 1).reshape(H, -1).sum(-1)  # noqa: E731 - sum per head
    ones = torch.ones_like(entropy, dtype=torch.float64)
    return torch.stack([per(ones), per(entropy.double()), per(collapsed), per(shown), per(shown * shown),
                        per(finite.double())], 1)  # (H, SLOTS)


def rows(acc: list[list[float]]) -> list[dict]:
    """The per-head columns from summed ``head_sums``."""
    out = []
    for h, (n, ent, col, s, s2, m) in enumerate(acc):
        mean = s / m if m else math.nan
        out.append({"head": h, "attn_entropy": ent / n if n else math.nan, "attn_collapsed": col / n if n else math.nan,
                    "attn_logit_std": math.sqrt(max(s2 / m - mean * mean, 0.0)) if m else math.nan})
    return out
