"""A GRU character generator: the recurrent baseline a GPT has to beat.

The model of the text-generation example in the source articles: an
embedding, a GRU (Cho et al., 2014) that carries a hidden state along the
sequence, and a linear layer to next-token scores. It wears the same face as
every language model of the book, ``model(idx, targets=None) -> (logits, loss)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .decoding import sample_next


@dataclass
class GRUConfig:
    vocab_size: int = 65
    embed_dim: int = 64        # the source article's example: 64
    hidden_dim: int = 256      # the source article's example: 128
    n_layer: int = 1
    dropout: float = 0.0


def hidden_dim_for(n_params: int, vocab_size: int, embed_dim: int, multiple: int = 8) -> int:
    """The hidden size that gives a one-layer :class:`GRULM` about ``n_params`` parameters.

    Such a GRU has ``3 (E H + H^2 + 2 H)`` parameters in its three gates, ``V E`` in the
    embedding and ``H V + V`` in the output layer; this solves ``3 H^2 + b H + c = 0`` for
    ``H`` and rounds it to a multiple of ``multiple`` (CPU kernels are faster on such sizes).
    """
    E, V = embed_dim, vocab_size
    b, c = 3 * E + 6 + V, V * E + V - n_params
    if c >= 0:
        raise ValueError(f"{n_params:,} parameters do not even cover the embedding and output bias "
                         f"({V * E + V:,} for vocab_size={V}, embed_dim={E})")
    h = (-b + math.sqrt(b * b - 12 * c)) / 6
    return max(multiple, multiple * round(h / multiple))


class GRULM(nn.Module):
    """Embedding -> GRU -> Linear, with the ``(logits, loss)`` face."""

    def __init__(self, config: GRUConfig):
        super().__init__()
        c = self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.rnn = nn.GRU(c.embed_dim, c.hidden_dim, num_layers=c.n_layer, batch_first=True,
                          dropout=c.dropout if c.n_layer > 1 else 0.0)
        self.fc = nn.Linear(c.hidden_dim, c.vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, h: torch.Tensor | None = None,
                return_state: bool = False):
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        out, h = self.rnn(self.embedding(idx), h)          # (B, T, hidden), (n_layer, B, hidden)
        logits = self.fc(out)                               # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return (logits, loss, h) if return_state else (logits, loss)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``idx`` (B, T); the hidden state carries the whole context, no window."""
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError("the prompt must be a non-empty (B, T) tensor of token ids")
        was_training = self.training
        self.eval()
        logits, _, h = self(idx, return_state=True)
        for _ in range(max_new_tokens):
            next_id = sample_next(logits[:, -1], temperature, top_k, top_p, generator)   # (B,)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
            logits, _, h = self(next_id[:, None], h=h, return_state=True)
        self.train(was_training)
        return idx
