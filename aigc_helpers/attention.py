"""Scaled dot-product attention and multi-head attention, from scratch.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V          (Vaswani et al., 2017)

Every query position takes a weighted average of the value vectors; the
weights say how well its query matches each key. Dividing by sqrt(d_k) keeps
the dot products at unit variance whatever the head size, so the softmax does
not saturate.

Masks use one convention throughout: a boolean mask is ``True`` where a query
**may** attend (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
``causal_mask(T)`` lets position t see positions 0..t; ``padding_mask(lengths, T)``
hides padding at the end of shorter sequences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(T: int, device=None) -> torch.Tensor:
    """``(T, T)`` boolean mask, True on and below the diagonal: no peeking at the future."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(B, 1, 1, T)`` boolean mask, True on real tokens, False on padding (keys only)."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must be a 1-D tensor of values in [1, {T}], got {lengths.tolist()}")
    keep = torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]   # (B, T)
    return keep[:, None, None, :]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 return_weights: bool = False):
    """softmax(q k^T / sqrt(d_k)) v, written out.

    Args:
        q: ``(..., T_q, d_k)``; k: ``(..., T_k, d_k)``; v: ``(..., T_k, d_v)``.
        mask: boolean, broadcastable to ``(..., T_q, T_k)``, True = may attend.
    Returns ``(..., T_q, d_v)``, and the attention weights ``(..., T_q, T_k)``
    when ``return_weights``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same size, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same length, got {k.shape[-2]} and {v.shape[-2]}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])         # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError("mask must be boolean (True where attention is allowed)")
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)                                     # (..., T_q, T_k)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    out = weights @ v                                                    # (..., T_q, d_v)
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value and output projections.

    ``n_head`` heads of size ``d_model // n_head`` attend in parallel; their
    outputs are concatenated and mixed by ``out_proj``. Self-attention passes
    the same tensor as query, key and value; cross-attention passes the
    decoder's states as the query and the encoder's as key and value.
    ``fast=True`` calls PyTorch's fused ``scaled_dot_product_attention``
    (the same mathematics, checked equal in the tests).
    """

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0, bias: bool = True, fast: bool = True):
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        self.d_model, self.n_head, self.d_head = d_model, n_head, d_model // n_head
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = dropout
        self.fast = fast
        self.last_weights: torch.Tensor | None = None   # filled when forward(..., keep_weights=True)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.d_head).transpose(1, 2)      # (B, h, T, d_head)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, is_causal: bool = False, keep_weights: bool = False) -> torch.Tensor:
        """``query`` (B, T_q, d_model); ``key``/``value`` (B, T_k, d_model), default = ``query``.

        ``mask`` is boolean, broadcastable to (B, h, T_q, T_k), True = may attend;
        ``is_causal`` adds the causal mask. Returns (B, T_q, d_model).
        """
        key = query if key is None else key
        value = key if value is None else value
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"expected query of shape (B, T, {self.d_model}), got {tuple(query.shape)}")
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        if is_causal:
            cm = causal_mask(q.shape[-2], q.device)
            if k.shape[-2] != q.shape[-2]:
                raise ValueError("is_causal needs as many keys as queries")
            mask = cm if mask is None else (mask & cm)
        p = self.dropout if self.training else 0.0
        if self.fast and not keep_weights:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, T_q, d_head)
        else:
            y, w = scaled_dot_product_attention(q, k, v, mask, p, return_weights=True)
            self.last_weights = w.detach() if keep_weights else None
        B, _, T_q, _ = y.shape
        y = y.transpose(1, 2).reshape(B, T_q, self.d_model)                # concatenate the heads
        return self.out_proj(y)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``torch.nn.MultiheadAttention(batch_first=True)``."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_head:
            raise ValueError("sizes differ")
        if mha.in_proj_weight is None:
            raise ValueError("only a MultiheadAttention with one in-projection (kdim = vdim = embed_dim) can be copied")
        if (mha.in_proj_bias is None) != (self.q_proj.bias is None):
            raise ValueError("one module has biases and the other has none: build both with the same bias setting")
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        self.q_proj.weight.copy_(w_q)
        self.k_proj.weight.copy_(w_k)
        self.v_proj.weight.copy_(w_v)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None:
            b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
            self.q_proj.bias.copy_(b_q)
            self.k_proj.bias.copy_(b_k)
            self.v_proj.bias.copy_(b_v)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self
