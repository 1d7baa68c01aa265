"""N-gram language models: a unigram and a bigram, counted and learned.

A language model gives a probability to the next token. The two simplest ones
forget almost all of the context:

- :class:`UnigramLM` ignores it: ``P(x_t)`` is how often token ``x_t`` occurs.
- :class:`CountBigramLM` looks at the previous token only:
  ``P(x_t | x_{t-1}) = C[x_{t-1}, x_t] / sum_b C[x_{t-1}, b]``, read off a
  ``(V, V)`` table of counts. Adding ``alpha`` to every count ("add-alpha"
  or Laplace smoothing) keeps pairs never seen in training possible.
- :class:`BigramLM` is the same bigram as an ``nn.Module``: a ``(V, V)`` table
  of logits trained by gradient descent on the cross-entropy. Counting is the
  maximum-likelihood solution, so training should arrive at the counted model.

The counted models are plain Python objects (``from_ids``, ``probs``,
``loss``, ``sample``); :class:`BigramLM` has the face of every language model
in the book, ``model(idx, targets=None) -> (logits, loss)``, and a
``generate`` method. All sampling takes a ``torch.Generator`` so a seed fixes
the text, and a ``temperature`` that divides the logits (log-probabilities).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- checks and helpers


def _as_ids(ids, vocab_size: int, who: str, min_len: int = 1) -> torch.Tensor:
    """Validate token ids: an integer tensor (or list) with values in [0, vocab_size)."""
    if not isinstance(ids, torch.Tensor):                  # no dtype here: 1.9 must be refused, not cut to 1
        ids = torch.as_tensor(ids) if len(ids) else torch.zeros(0, dtype=torch.long)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{who} expects integer token ids, got dtype {ids.dtype}")
    ids = ids.long()
    if ids.numel() < min_len:
        raise ValueError(f"{who} needs at least {min_len} token id(s), got {ids.numel()}; "
                         "pass a non-empty sequence (e.g. tokenizer.encode(text))")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)].unique()[:5].tolist()
        raise ValueError(f"{who}: token ids out of range [0, {vocab_size}): {bad}; "
                         "were they made by a tokenizer with another vocabulary?")
    return ids


def _check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")


def _check_alpha(alpha: float) -> None:
    if not alpha >= 0:
        raise ValueError(f"alpha (the smoothing count) must be >= 0, got {alpha}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; small values (e.g. 0.1) "
                         "are nearly greedy, 1.0 samples the model as it is")


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits`` ``(..., V)`` after dividing by ``temperature``.

    ``temperature < 1`` sharpens the distribution (safer, more repetitive text),
    ``> 1`` flattens it (more surprising, more mistakes). Returns ``(...)`` ids.
    """
    _check_temperature(temperature)
    probs = F.softmax(logits.float() / temperature, dim=-1)            # (..., V)
    if generator is not None:
        probs = probs.to(generator.device)                             # draw where the generator lives
    flat = probs.reshape(-1, probs.shape[-1])                          # (N, V)
    ids = torch.multinomial(flat, 1, generator=generator)              # (N, 1)
    return ids.view(probs.shape[:-1]).to(logits.device)


def count_bigrams(ids, vocab_size: int) -> torch.Tensor:
    """``C[a, b]`` = how often token ``b`` follows token ``a`` in ``ids``: a ``(V, V)`` float tensor."""
    _check_vocab_size(vocab_size)
    ids = _as_ids(ids, vocab_size, "count_bigrams", min_len=2).flatten()
    pair = ids[:-1] * vocab_size + ids[1:]                             # (N-1,) one number per pair (a, b)
    return torch.bincount(pair, minlength=vocab_size ** 2).view(vocab_size, vocab_size).float()


def loss_from_counts(logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Average cross-entropy of a bigram logit table over every counted pair.

    A bigram model's loss on a text depends on the text only through its pair
    counts: ``L = -1/N sum_ab C[a, b] log softmax(logits[a])[b]``. This equals
    ``model(x, y)[1]`` on all pairs ``(x, y)`` of the text but costs one
    ``(V, V)`` operation, however long the text is.
    """
    if logits.shape != counts.shape or logits.dim() != 2:
        raise ValueError(f"expected two (V, V) tables, got {tuple(logits.shape)} and {tuple(counts.shape)}")
    log_probs = F.log_softmax(logits, dim=-1)                           # (V, V), row a: log P(. | a)
    weighted = torch.where(counts > 0, counts * log_probs, torch.zeros_like(log_probs))  # 0 * -inf := 0
    return -weighted.sum() / counts.sum()


# --------------------------------------------------------------------------- counted models


class UnigramLM:
    """``P(x_t) = (count(x_t) + alpha) / (N + alpha V)``: every position independent of the others."""

    def __init__(self, counts: torch.Tensor, alpha: float = 1.0):
        _check_alpha(alpha)
        if counts.dim() != 1 or len(counts) == 0:
            raise ValueError(f"expected a 1-D tensor of V counts, got shape {tuple(counts.shape)}")
        self.counts = counts.float()                                    # (V,)
        self.alpha = float(alpha)
        smoothed = self.counts + self.alpha                             # (V,)
        if smoothed.sum() <= 0:
            raise ValueError("all counts are zero and alpha=0: no probabilities to estimate")
        self.probs = smoothed / smoothed.sum()                          # (V,) sums to 1

    @classmethod
    def from_ids(cls, ids, vocab_size: int, alpha: float = 1.0) -> "UnigramLM":
        """Count every token of ``ids`` (values in ``[0, vocab_size)``)."""
        _check_vocab_size(vocab_size)
        ids = _as_ids(ids, vocab_size, "UnigramLM.from_ids").flatten()
        return cls(torch.bincount(ids, minlength=vocab_size), alpha)

    @property
    def vocab_size(self) -> int:
        return len(self.probs)

    def log_likelihood(self, ids) -> float:
        """``sum_t log P(x_t)`` in nats."""
        ids = _as_ids(ids, self.vocab_size, "UnigramLM.log_likelihood").flatten()
        return float(self.probs.log()[ids].sum())

    def loss(self, ids) -> float:
        """Average negative log-likelihood per token (cross-entropy, nats)."""
        ids = _as_ids(ids, self.vocab_size, "UnigramLM.loss").flatten()
        return -self.log_likelihood(ids) / len(ids)

    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent draws ``(n,)``."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        logits = self.probs.log().expand(n, -1)                         # (n, V)
        return sample_from_logits(logits, temperature, generator)

    def __repr__(self) -> str:
        return f"UnigramLM(vocab_size={self.vocab_size}, alpha={self.alpha})"


class CountBigramLM:
    """``P(b | a) = (C[a, b] + alpha) / (sum_c C[a, c] + alpha V)`` from a ``(V, V)`` count table."""

    def __init__(self, counts: torch.Tensor, alpha: float = 1.0):
        _check_alpha(alpha)
        if counts.dim() != 2 or counts.shape[0] != counts.shape[1] or counts.numel() == 0:
            raise ValueError(f"expected a square (V, V) count table, got shape {tuple(counts.shape)}")
        self.counts = counts.float()                                    # (V, V)
        self.alpha = float(alpha)
        smoothed = self.counts + self.alpha                             # (V, V)
        row_sums = smoothed.sum(dim=1, keepdim=True)                    # (V, 1)
        # A character never followed by anything (alpha=0) gets a uniform row instead of 0/0.
        self.probs = torch.where(row_sums > 0, smoothed / row_sums.clamp(min=1e-12),
                                 torch.full_like(smoothed, 1.0 / len(smoothed)))  # (V, V) rows sum to 1

    @classmethod
    def from_ids(cls, ids, vocab_size: int, alpha: float = 1.0) -> "CountBigramLM":
        """Count every adjacent pair of ``ids``."""
        return cls(count_bigrams(ids, vocab_size), alpha)

    @property
    def vocab_size(self) -> int:
        return len(self.probs)

    @property
    def logits(self) -> torch.Tensor:
        """``log P(b | a)`` as a ``(V, V)`` table: the logits that :class:`BigramLM` should learn."""
        return self.probs.log()

    def log_likelihood(self, ids) -> float:
        """``sum_{t>=1} log P(x_t | x_{t-1})`` in nats (the first token is given)."""
        ids = _as_ids(ids, self.vocab_size, "CountBigramLM.log_likelihood", min_len=2).flatten()
        return float(self.probs[ids[:-1], ids[1:]].log().sum())

    def loss(self, ids) -> float:
        """Average negative log-likelihood per predicted token (cross-entropy, nats)."""
        ids = _as_ids(ids, self.vocab_size, "CountBigramLM.loss", min_len=2).flatten()
        return -self.log_likelihood(ids) / (len(ids) - 1)

    def sample(self, prompt, max_new_tokens: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue the 1-D ``prompt`` by ``max_new_tokens`` ids; returns ``(len(prompt) + max_new_tokens,)``."""
        prompt = _as_ids(prompt, self.vocab_size, "CountBigramLM.sample (prompt)").flatten()
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
        _check_temperature(temperature)
        logits = self.logits
        out = prompt.tolist()
        for _ in range(max_new_tokens):
            out.append(int(sample_from_logits(logits[out[-1]], temperature, generator)))
        return torch.tensor(out, dtype=torch.long)

    def __repr__(self) -> str:
        return f"CountBigramLM(vocab_size={self.vocab_size}, alpha={self.alpha})"


# --------------------------------------------------------------------------- learned model


class BigramLM(nn.Module):
    """A bigram language model learned by gradient descent.

    Its only parameter is a ``(V, V)`` table: row ``a`` holds the logits of the
    token that follows ``a``. It starts at zero, the uniform model (loss
    ``ln V``). Karpathy's "makemore" bigram (2022) with the same idea uses an
    ``nn.Embedding``; a bare table makes the link to counting plain.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        _check_vocab_size(vocab_size)
        self.vocab_size = vocab_size
        self.logits_table = nn.Parameter(torch.zeros(vocab_size, vocab_size))  # (V, V)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` (B, T) ids -> logits (B, T, V) for the next token, and the mean cross-entropy
        against ``targets`` (B, T) when given (else ``None``). Any shape of ``idx`` works."""
        if not isinstance(idx, torch.Tensor):
            raise ValueError(f"idx must be a tensor of token ids, got {type(idx).__name__}")
        idx = _as_ids(idx, self.vocab_size, "BigramLM (idx)")
        logits = self.logits_table[idx]                                 # (B, T, V)
        if targets is None:
            return logits, None
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        targets = _as_ids(targets, self.vocab_size, "BigramLM (targets)")
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))
        return logits, loss

    def probs(self) -> torch.Tensor:
        """``P(b | a)`` as a ``(V, V)`` table (rows sum to 1)."""
        return F.softmax(self.logits_table.detach(), dim=-1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``idx`` (B, T) or (T,) by ``max_new_tokens`` sampled tokens.

        Returns ``(B, T + max_new_tokens)`` (or 1-D for a 1-D prompt). Only the
        last token matters to a bigram model, but the face is the same as GPT's.
        """
        if not isinstance(idx, torch.Tensor) or idx.dim() not in (1, 2) or idx.shape[-1] == 0:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"the prompt must be a non-empty (T,) or (B, T) tensor of token ids, got {shape}; "
                             "start from at least one token, e.g. tokenizer.encode('\\n')")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
        _check_temperature(temperature)
        one_d = idx.dim() == 1
        idx = _as_ids(idx, self.vocab_size, "BigramLM.generate (prompt)")
        idx = idx[None] if one_d else idx                               # (B, T)
        idx = idx.to(self.logits_table.device)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -1:])                               # (B, 1, V): only the last token counts
            next_id = sample_from_logits(logits[:, -1, :], temperature, generator)  # (B,)
            idx = torch.cat([idx, next_id[:, None]], dim=1)             # (B, T + 1)
        return idx[0] if one_d else idx
