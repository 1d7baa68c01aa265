"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), small.

Pieces, in the order the chapter builds them:

- ``sinusoidal_encoding``: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
- ``FeedForward``: the position-wise network  FFN(x) = W2 · act(W1 x + b1) + b2
- ``EncoderBlock`` / ``DecoderBlock``: attention + FFN, each wrapped in a
  residual connection and LayerNorm, either *post-LN* (the 2017 paper:
  ``x = LN(x + f(x))``) or *pre-LN* (GPT-2 and most models since:
  ``x = x + f(LN(x))``)
- ``Seq2SeqTransformer``: encoder, decoder with cross-attention, and the
  language-model face ``model(src, tgt_in, targets=None) -> (logits, loss)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention


def sinusoidal_encoding(n_positions: int, d_model: int) -> torch.Tensor:
    """The fixed positional encoding, shape ``(n_positions, d_model)`` (d_model even)."""
    if d_model % 2:
        raise ValueError(f"d_model must be even, got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]             # (P, 1)
    freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)
    pe = torch.zeros(n_positions, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)                                      # even dimensions
    pe[:, 1::2] = torch.cos(pos * freq)                                      # odd dimensions
    return pe


class FeedForward(nn.Module):
    """Position-wise feed-forward network: the same two-layer MLP at every position."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))                     # (B, T, d_model)


class EncoderBlock(nn.Module):
    """Self-attention + FFN, each in a residual connection with LayerNorm."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.0, pre_ln: bool = True):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_head, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.pre_ln = pre_ln

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        attn = lambda h: self.drop(self.attn(h, mask=mask, is_causal=is_causal))  # noqa: E731
        if self.pre_ln:
            x = x + attn(self.ln1(x))
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + attn(x))
        return self.ln2(x + self.ffn(x))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder, FFN; each with residual + LayerNorm."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.0, pre_ln: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_head, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.pre_ln = pre_ln

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        self_attn = lambda h: self.drop(self.self_attn(h, is_causal=True))              # noqa: E731
        cross = lambda h: self.drop(self.cross_attn(h, memory, memory, mask=memory_mask))  # noqa: E731
        if self.pre_ln:
            x = x + self_attn(self.ln1(x))
            x = x + cross(self.ln2(x))
            return x + self.ffn(self.ln3(x))
        x = self.ln1(x + self_attn(x))
        x = self.ln2(x + cross(x))
        return self.ln3(x + self.ffn(x))


@dataclass
class Seq2SeqConfig:
    src_vocab: int = 16
    tgt_vocab: int = 16
    max_len: int = 32          # longest sequence (the 2017 paper fixes none: sinusoids extend to any length)
    d_model: int = 64          # 512
    n_head: int = 4            # 8
    n_layer: int = 2           # 6 encoder + 6 decoder layers
    d_ff: int = 256            # 2048
    dropout: float = 0.0       # 0.1
    pre_ln: bool = True        # the 2017 paper is post-LN (False)
    pad_id: int = 0            # padding token in both vocabularies; ignored by the loss


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer: ``model(src, tgt_in, targets=None) -> (logits, loss)``.

    ``src`` (B, S) and ``tgt_in`` (B, T) are token ids; ``tgt_in`` starts with a
    start token and ``targets`` is the same sequence shifted left (teacher forcing).
    Padding (``pad_id``) in ``src`` is masked out of attention and in
    ``targets`` ignored by the loss.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        self.src_emb = nn.Embedding(c.src_vocab, c.d_model)
        self.tgt_emb = nn.Embedding(c.tgt_vocab, c.d_model)
        for emb in (self.src_emb, self.tgt_emb):   # scaled by sqrt(d_model) below: unit size, like the PE
            nn.init.normal_(emb.weight, std=c.d_model ** -0.5)
        self.register_buffer("pe", sinusoidal_encoding(c.max_len, c.d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout, c.pre_ln) for _ in range(c.n_layer))
        self.decoder = nn.ModuleList(DecoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout, c.pre_ln) for _ in range(c.n_layer))
        self.ln_enc = nn.LayerNorm(c.d_model) if c.pre_ln else nn.Identity()
        self.ln_dec = nn.LayerNorm(c.d_model) if c.pre_ln else nn.Identity()
        self.head = nn.Linear(c.d_model, c.tgt_vocab)
        self.drop = nn.Dropout(c.dropout)

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected token ids of shape (B, T), got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of length {ids.shape[1]} exceeds max_len={self.config.max_len}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= emb.num_embeddings):
            raise ValueError(f"token ids must lie in [0, {emb.num_embeddings})")
        x = emb(ids) * math.sqrt(self.config.d_model) + self.pe[: ids.shape[1]]   # (B, T, d_model)
        return self.drop(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, d_model) and the source padding mask (B, 1, 1, S)."""
        keep = src != self.config.pad_id                     # (B, S) real tokens, wherever the padding sits
        keep[:, 0] |= ~keep.any(1)                           # a row of padding only still attends somewhere
        mask = keep[:, None, None, :] if not keep.all() else None
        x = self._embed(self.src_emb, src)
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.ln_enc(x), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask=None) -> torch.Tensor:
        """Next-token logits (B, T, tgt_vocab) for every prefix of ``tgt_in``."""
        y = self._embed(self.tgt_emb, tgt_in)
        for block in self.decoder:
            y = block(y, memory, memory_mask)
        return self.head(self.ln_dec(y))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None):
        memory, mask = self.encode(src)
        logits = self.decode(tgt_in, memory, mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=self.config.pad_id)
        return logits, loss

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, bos_id: int, max_len: int) -> torch.Tensor:
        """Generate (B, max_len) target ids one token at a time, always taking the most likely."""
        if max_len < 1 or max_len > self.config.max_len:       # the decoder reads at most max_len tokens
            raise ValueError(f"max_len must be in [1, {self.config.max_len}], got {max_len}")
        memory, mask = self.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            next_id = self.decode(out, memory, mask)[:, -1].argmax(-1, keepdim=True)   # (B, 1)
            out = torch.cat([out, next_id], dim=1)
        return out[:, 1:]
