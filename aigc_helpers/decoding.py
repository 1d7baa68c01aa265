"""Decoding strategies: how to turn next-token logits into text.

Each function works on plain logits, so it serves any language model:

- ``greedy``: always the most likely token;
- ``apply_temperature``: divide logits by T (T < 1 sharpens, T > 1 flattens);
- ``top_k_filter``: keep the k most likely tokens (Fan et al., 2018);
- ``top_p_filter``: keep the smallest set whose probability reaches p,
  "nucleus sampling" (Holtzman et al., 2020);
- ``sample_next``: all of the above, then one draw;
- ``beam_search``: keep the ``beam_width`` most likely partial sequences;
- ``distinct_n``: how varied generated text is (Li et al., 2016).

Filters set removed tokens' logits to ``-inf``, so a softmax gives them zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token per row: ``(..., V) -> (...)``."""
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (temperature > 0)."""
    _check_temperature(temperature)
    if temperature == 0:
        raise ValueError("temperature 0 is greedy decoding; use greedy() instead of dividing by 0")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to ``-inf``."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive integer, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                    # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose total probability is >= ``p``.

    The most likely token is always kept, so ``p -> 0`` becomes greedy decoding.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs          # probability of the tokens ranked above
    drop_sorted = mass_before >= p                      # already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits`` ``(B, V) -> (B,)``.

    ``temperature=0`` is greedy decoding; ``top_k`` and ``top_p`` filter first. The draw
    happens where ``generator`` lives, so a seeded CPU generator also works for a model on
    a GPU; the token comes back on the device of ``logits``.
    """
    _check_temperature(temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if temperature == 0:
        return greedy(logits)
    probs = apply_temperature(logits, temperature).softmax(dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)                  # draw where the generator lives
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def beam_search(next_logits: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor,
                max_new_tokens: int, beam_width: int = 4, eos_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most likely continuation found by beam search.

    Args:
        next_logits: maps token ids ``(N, T)`` to next-token logits ``(N, V)``
            (for a language model: ``lambda ids: model(ids)[0][:, -1]``).
        prompt: ``(T0,)`` token ids.
        max_new_tokens: length of the continuation (shorter if ``eos_id`` ends it).
        beam_width: how many partial sequences to keep (1 = greedy).
    Returns the best full sequence ``(T0 + n,)`` and its log-probability
    given the prompt (sum over the new tokens).
    """
    if prompt.dim() != 1 or len(prompt) == 0:
        raise ValueError("prompt must be a non-empty 1-D tensor of token ids")
    if beam_width < 1 or max_new_tokens < 1:
        raise ValueError("beam_width and max_new_tokens must be >= 1")
    beams = prompt[None, :]                                        # (1, T)
    scores = torch.zeros(1, device=prompt.device)                  # log-probability of each beam
    finished: list[tuple[float, torch.Tensor]] = []
    for _ in range(max_new_tokens):
        logp = next_logits(beams).log_softmax(dim=-1)              # (N, V)
        V = logp.shape[-1]
        total = (scores[:, None] + logp).reshape(-1)               # (N * V,)
        top = torch.topk(total, min(beam_width, total.numel()))
        beam_idx, token = top.indices // V, top.indices % V
        beams = torch.cat([beams[beam_idx], token[:, None]], dim=1)
        scores = top.values
        if eos_id is not None:
            done = token == eos_id
            finished += [(s.item(), b) for s, b in zip(scores[done], beams[done])]
            beams, scores = beams[~done], scores[~done]
            if len(beams) == 0:
                break
    finished += [(s.item(), b) for s, b in zip(scores, beams)]
    best_score, best = max(finished, key=lambda sb: sb[0])
    return best, best_score


def sequence_logprob(next_logits: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor,
                     continuation: torch.Tensor) -> float:
    """log P(continuation | prompt) under the model, summed over tokens."""
    ids = torch.cat([prompt, continuation])
    total = 0.0
    with torch.no_grad():
        for t in range(len(prompt), len(ids)):
            total += next_logits(ids[None, :t]).log_softmax(-1)[0, ids[t]].item()
    return total


def distinct_n(sequences: Iterable[Sequence], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams divided by all n-grams.

    ``sequences`` is a collection of token sequences: lists of words or ids,
    strings (sequences of characters) or the rows of a 2-D tensor. N-grams
    never cross from one sequence into the next. 1.0 means no n-gram repeats;
    text stuck in a loop scores near 0.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    seqs = [seq.tolist() if isinstance(seq, torch.Tensor) else seq for seq in sequences]  # ids, not tensors
    grams = [tuple(seq[i:i + n]) for seq in seqs for i in range(len(seq) - n + 1)]
    if not grams:
        raise ValueError(f"no {n}-grams: every sequence is shorter than n={n}")
    return len(set(grams)) / len(grams)
