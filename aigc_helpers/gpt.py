"""GPT: a decoder-only Transformer language model (Radford et al., 2018, 2019).

The same shape as nanoGPT and Hugging Face's GPT-2, small enough to train on
a CPU: token + learned position embeddings, ``n_layer`` pre-LN blocks of
causal self-attention and an MLP, a final LayerNorm, and a head whose weights
are tied to the token embedding. Called as ``model(idx, targets=None) ->
(logits, loss)`` with ``idx`` of shape (B, T).

Attention uses PyTorch's fused ``scaled_dot_product_attention``; the chapter on
attention shows that :mod:`aigc_helpers.attention`'s from-scratch version
computes the same numbers. ``generate`` keeps a KV cache: the keys and values
of positions already seen, so each new token runs through the model alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import causal_mask, scaled_dot_product_attention
from .decoding import sample_next
from .train import fused_adamw


@dataclass
class GPTConfig:
    vocab_size: int = 65       # set from the data (the book's Shakespeare: 84 characters); GPT-2: 50257 BPE tokens
    block_size: int = 64       # context length; GPT-2: 1024
    n_layer: int = 4           # GPT-2 small: 12
    n_head: int = 4            # GPT-2 small: 12
    n_embd: int = 128          # GPT-2 small: 768
    dropout: float = 0.0       # GPT-2: 0.1
    bias: bool = True          # biases in Linear and LayerNorm, as GPT-2


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees only positions <= t."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        if c.n_embd % c.n_head:
            raise ValueError(f"n_embd={c.n_embd} must be divisible by n_head={c.n_head}")
        self.n_head, self.dropout = c.n_head, c.dropout
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)   # query, key, value in one matmul
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, return_weights: bool = False, cache: list | None = None):
        """(B, T, C) -> (B, T, C); with ``return_weights`` also the (B, h, T, T) attention
        weights, computed by the from-scratch :func:`~aigc_helpers.attention.scaled_dot_product_attention`.

        ``cache`` is this layer's KV cache: a list, empty at first, that holds ``[k, v]`` of the
        positions seen so far. ``x`` is then the *next* positions: they attend to the cached
        keys and values and to their own, and their keys and values are appended to the cache.
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                           # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d)
        if cache is not None:
            if return_weights:
                raise ValueError("return_weights does not work with a cache")
            if cache:                                                      # keys and values of earlier positions
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, h, L, d)
            cache[:] = [k, v]
        L = k.shape[2]                                                     # positions attended to: cached + new
        if return_weights:
            y, w = scaled_dot_product_attention(q, k, v, causal_mask(T, x.device), return_weights=True)
        elif L == T:                                                       # nothing cached before x: the usual causal mask
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, h, T, d)
        else:   # new query i sits at position L - T + i and may see keys 0 .. L - T + i
            mask = None if T == 1 else torch.ones(T, L, dtype=torch.bool, device=x.device).tril(L - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)                             # concatenate heads
        y = self.resid_drop(self.c_proj(y))
        return (y, w) if return_weights else y


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exact GELU, as nanoGPT (GPT-2 used the tanh approximation; on a CPU the exact one is faster)
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, return_weights: bool = False, cache: list | None = None):
        if return_weights:
            a, w = self.attn(self.ln_1(x), return_weights=True)
            x = x + a
            return x + self.mlp(self.ln_2(x)), w
        x = x + self.attn(self.ln_1(x), cache=cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT language model: ``model(idx, targets=None) -> (logits, loss)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)      # token embedding
        self.wpe = nn.Embedding(c.block_size, c.n_embd)      # learned position embedding
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                # weight tying (Press & Wolf, 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():              # GPT-2: scale residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by convention without the position embedding (tied weights count once)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def new_cache(self) -> list[list]:
        """An empty KV cache for ``forward(idx, cache=...)``: one ``[k, v]`` list per block."""
        return [[] for _ in self.blocks]

    @staticmethod
    def cache_length(cache: list[list] | None) -> int:
        """How many positions a KV cache holds (0 for ``None`` or an empty cache)."""
        return cache[0][0].shape[2] if cache and cache[0] else 0

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: list[list] | None = None):
        """``idx`` (B, T) -> ``(logits (B, T, V), loss or None)``.

        With a ``cache`` from :meth:`new_cache`, ``idx`` holds the tokens that come after the
        cached positions; the cache grows by T positions.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        past = self.cache_length(cache)                       # positions already in the cache
        if past + T > self.config.block_size:
            raise ValueError(f"sequence length {past + T} exceeds block_size={self.config.block_size}")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))          # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=None if cache is None else cache[i])
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x), None                      # (B, T, V)
        logits = self.lm_head(x)                              # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model with from-scratch attention and return ``(logits, weights)``.

        ``weights`` has shape (n_layer, B, n_head, T, T): row t of a head says how
        much position t attended to each earlier position.
        """
        if idx.dim() != 2 or idx.shape[1] > self.config.block_size:
            raise ValueError(f"idx must have shape (B, T <= {self.config.block_size}), got {tuple(idx.shape)}")
        was_training = self.training
        self.eval()                                           # no dropout: the maps of the model as it predicts
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        maps = []
        for block in self.blocks:
            x, w = block(x, return_weights=True)
            maps.append(w)
        self.train(was_training)
        return self.lm_head(self.ln_f(x)), torch.stack(maps)

    def configure_optimizer(self, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95)) -> torch.optim.AdamW:
        """AdamW with weight decay on weight matrices and embeddings only, not on biases or LayerNorm."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return fused_adamw(groups, lr=lr, betas=betas)   # one fused kernel for the whole update

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + max_new_tokens).

        A context longer than ``block_size`` is cropped to its last ``block_size``
        tokens before each step. ``temperature=0`` is greedy decoding.

        With ``use_cache`` the keys and values of the context are kept between steps, so
        each step runs only the newest token through the model. That works while the
        context fits in the window. Once it is longer, the window slides by one token
        each step and every token's position, hence every key and value, changes: those
        steps run the whole window again, as ``use_cache=False`` does at every step.
        """
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError("the prompt must be a non-empty (B, T) tensor of token ids")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        was_training = self.training
        self.eval()
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache or idx.shape[1] > self.config.block_size:
                logits, _ = self(idx[:, -self.config.block_size:])              # the whole (cropped) window
            elif cache is None:
                cache = self.new_cache()
                logits, _ = self(idx, cache=cache)                              # the prompt, filling the cache
            else:
                logits, _ = self(idx[:, -1:], cache=cache)                      # only the newest token
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B,)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
        self.train(was_training)
        return idx
