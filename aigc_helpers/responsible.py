"""Responsible AIGC, measured: text watermarks, memorisation and an association test.

Reading order:

1. :func:`green_lists` and :class:`WatermarkProcessor`: the "soft" watermark of
   Kirchenbauer et al. (2023). The previous token picks a *green list* holding a
   fraction ``gamma`` of the vocabulary; the processor adds ``delta`` to the green
   tokens' logits before sampling.
2. :func:`sample_with_processor`: sampling from any model with the book's face
   ``model(idx) -> (logits, loss)`` with a logits processor in the loop. It also
   returns the *unprocessed* model's log-probability of every token it chose, the
   price the watermark pays in quality.
3. :func:`green_count` and :func:`watermark_z`: the detector. It needs the key and
   the text, not the model: under "no watermark" each token is green with
   probability ``gamma``, so the count of green tokens has a binomial distribution
   and a large z-score is evidence of the watermark.
4. :func:`substitute`: the simplest attack, replacing a fraction of tokens at random.
5. :func:`memorisation_rate`: how often greedy decoding from a prefix reproduces the
   true next ``k`` tokens exactly (Carlini et al., 2021, 2023); :func:`plant_canaries`
   puts made-up secrets into training text to measure it (Carlini et al., 2019).
6. :func:`sequence_logprob`, :func:`continuation_logprob`, :func:`cooccurrence_lean` and
   :func:`association_test`: score words (with a language model, or by counting the
   corpus) and test whether two groups of words differ, with a permutation p-value
   (the statistic of Caliskan et al., 2017, on one score per word).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations

import torch

# --------------------------------------------------------------------------- watermark


def green_lists(vocab_size: int, gamma: float = 0.5, key: int = 0) -> torch.Tensor:
    """A (V, V) boolean table: row ``p`` is the green list used after token ``p``.

    Every row holds exactly ``round(gamma * V)`` green tokens, chosen at random from
    the secret ``key``. (Kirchenbauer et al. hash the previous token with the key to
    seed a generator; a table is the same thing computed once.)
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    if not 0 < gamma < 1:
        raise ValueError(f"gamma (the green fraction) must be in (0, 1), got {gamma}")
    n_green = round(gamma * vocab_size)
    if not 0 < n_green < vocab_size:
        raise ValueError(f"gamma={gamma} leaves no green or no red token in a vocabulary of {vocab_size}")
    g = torch.Generator().manual_seed(key)
    ranks = torch.rand(vocab_size, vocab_size, generator=g).argsort(dim=1).argsort(dim=1)  # (V, V) a permutation per row
    return ranks < n_green                                                                  # (V, V)


class WatermarkProcessor:
    """Adds ``delta`` to the logits of the green list chosen by the previous token.

    ``processor(prev_ids (B,), logits (B, V)) -> logits (B, V)``. ``delta = 0`` leaves the
    logits unchanged; ``delta -> inf`` allows green tokens only (the "hard" watermark).
    """

    def __init__(self, vocab_size: int, gamma: float = 0.5, delta: float | torch.Tensor = 2.0, key: int = 0):
        if (torch.as_tensor(delta) < 0).any():
            raise ValueError(f"delta must be >= 0, got {delta}")
        self.gamma, self.key = gamma, key
        self.delta = delta                                       # a number, or a (B,) tensor: one per row
        self.green = green_lists(vocab_size, gamma, key)        # (V, V)

    def __call__(self, prev_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[-1] != self.green.shape[0] or prev_ids.shape != logits.shape[:1]:
            raise ValueError(f"expected prev_ids (B,) and logits (B, {self.green.shape[0]}), "
                             f"got {tuple(prev_ids.shape)} and {tuple(logits.shape)}")
        mask = self.green.to(logits.device)[prev_ids]            # (B, V) green tokens of each row
        delta = torch.as_tensor(self.delta, dtype=logits.dtype, device=logits.device)
        delta = (delta[:, None] if delta.dim() == 1 else delta).expand_as(logits)
        hard = torch.isinf(delta)                                # delta = inf: red tokens are ruled out
        out = logits + torch.where(hard, 0.0, delta) * mask
        return out.masked_fill(hard & ~mask, float("-inf"))


@torch.no_grad()
def sample_with_processor(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int,
                          processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                          temperature: float = 1.0, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``max_new_tokens`` tokens after ``idx`` (B, T), passing the logits through ``processor``.

    Returns ``(ids (B, T + n), logp (B, n))`` where ``logp`` is the log-probability of each
    new token under the model *without* the processor (at the same temperature), so
    ``logp.mean()`` measures how natural the text is to the unwatermarked model.
    The context is cropped to the model's ``block_size`` (no KV cache: kept simple). The
    model runs on its own device; the draw happens where ``generator`` lives, and both
    outputs come back on the device of ``idx``.
    """
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError("the prompt must be a non-empty (B, T) tensor of token ids")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    home = idx.device
    idx = idx.to(next(model.parameters()).device)
    logps = []
    for _ in range(max_new_tokens):
        logits = model(idx[:, -block:])[0][:, -1, :] / temperature         # (B, V)
        raw = logits.log_softmax(dim=-1)                                   # (B, V) the model's own
        if processor is not None:
            logits = processor(idx[:, -1], logits)
        probs = logits.softmax(dim=-1)
        if generator is not None:
            probs = probs.to(generator.device)                             # draw where the generator lives
        nxt = torch.multinomial(probs, 1, generator=generator).to(idx.device)  # (B, 1)
        logps.append(raw.gather(1, nxt))
        idx = torch.cat([idx, nxt], dim=1)
    model.train(was_training)
    logp = torch.cat(logps, dim=1) if logps else idx.new_zeros(idx.shape[0], 0, dtype=torch.float)
    return idx.to(home), logp.to(home)


def green_count(ids: torch.Tensor, green: torch.Tensor, unique: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Green tokens among positions 1..T-1 of ``ids`` (B, T) (or (T,)): ``(count (B,), n_scored (B,))``.

    With ``unique=True`` each distinct (previous, token) pair of a row is scored once, so a
    text that repeats a pair (``th``, ``he`` ...) does not count the same coin flip twice.
    """
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError("ids must be (B, T) or (T,) with T >= 2: each scored token needs a previous one")
    V = green.shape[0]
    if int(ids.max()) >= V or int(ids.min()) < 0:
        raise ValueError(f"token ids must be in [0, {V})")
    if not unique:
        hits = green.to(ids.device)[ids[:, :-1], ids[:, 1:]]     # (B, T-1) was token t green after token t-1?
        return hits.sum(dim=1), torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)
    pair = ids[:, :-1] * V + ids[:, 1:]                          # (B, T-1) one id per (previous, token) pair
    seen = torch.zeros(ids.shape[0], V * V, dtype=torch.bool, device=ids.device)
    seen.scatter_(1, pair, True)                                 # (B, V*V) which pairs the row contains
    return (seen & green.to(ids.device).flatten()).sum(dim=1), seen.sum(dim=1)


def watermark_z(ids: torch.Tensor, green: torch.Tensor, gamma: float | None = None,
                unique: bool = False) -> torch.Tensor:
    """The detector's z-score per row of ``ids`` (B, T): (count - gamma n) / sqrt(n gamma (1 - gamma)).

    If the text was written without the key, each scored token is green with probability
    ``gamma``, so the count is about Binomial(n, gamma) and z about standard normal:
    z > 4 has a one-sided false-positive rate of 3e-5. Real text repeats pairs of tokens,
    which breaks the independence; ``unique=True`` scores each pair once.

    ``gamma`` is the table's own green fraction ``round(gamma V) / V``; pass it to check it.
    """
    table_gamma = green[0].sum().item() / green.shape[0]
    if gamma is not None and abs(gamma - table_gamma) > 1e-9:
        raise ValueError(f"the green lists hold a fraction {table_gamma:.6f} of the vocabulary, not gamma={gamma}; "
                         "use a gamma that makes gamma * vocab_size an integer, or leave gamma out")
    count, n = green_count(ids, green, unique)
    return (count.double() - table_gamma * n) / (n * table_gamma * (1 - table_gamma)).double().sqrt()


def substitute(ids: torch.Tensor, frac: float, vocab_size: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace a random ``frac`` of the tokens of ``ids`` (B, T) by other random tokens.

    Exactly ``round(frac * T)`` positions per row change, each to a token different from the old one.
    The random numbers are drawn where ``generator`` lives (the CPU without one), so a seeded
    generator edits the same positions whether ``ids`` sit on the CPU or on a GPU.
    """
    if not 0 <= frac <= 1:
        raise ValueError(f"frac must be in [0, 1], got {frac}")
    ids = ids.clone()
    B, T = ids.shape
    n = round(frac * T)
    where = generator.device if generator is not None else torch.device("cpu")
    pos = torch.rand(B, T, generator=generator, device=where).argsort(dim=1)[:, :n]   # (B, n) positions to change
    shift = torch.randint(1, vocab_size, (B, n), generator=generator, device=where)  # never 0: a new token
    pos, shift = pos.to(ids.device), shift.to(ids.device)
    ids.scatter_(1, pos, (ids.gather(1, pos) + shift) % vocab_size)
    return ids


# --------------------------------------------------------------------------- memorisation


@torch.no_grad()
def memorisation_rate(model: torch.nn.Module, corpus: torch.Tensor, starts: torch.Tensor,
                      prefix_len: int, k: int) -> torch.Tensor:
    """For each start s: does greedy decoding from ``corpus[s : s+prefix_len]`` reproduce
    ``corpus[s+prefix_len : s+prefix_len+k]`` exactly? Returns a (N,) boolean tensor
    (its mean is the extraction rate of Carlini et al.'s "k-extractable" test).
    """
    starts = torch.as_tensor(starts, dtype=torch.long)
    if prefix_len < 1 or k < 1:
        raise ValueError("prefix_len and k must be >= 1")
    if len(starts) == 0 or int(starts.min()) < 0 or int(starts.max()) + prefix_len + k > len(corpus):
        raise ValueError(f"every start must leave prefix_len + k = {prefix_len + k} tokens in a corpus "
                         f"of {len(corpus)}")
    offsets = torch.arange(prefix_len + k)
    windows = corpus[starts[:, None] + offsets]                                  # (N, prefix_len + k)
    device = next(model.parameters()).device
    out = model.generate(windows[:, :prefix_len].to(device), k, temperature=0)   # (N, prefix_len + k) greedy
    return (out[:, prefix_len:] == windows[:, prefix_len:].to(out.device)).all(dim=1).cpu()


def plant_canaries(text: str, canaries: Sequence[str], counts: Sequence[int], seed: int = 0) -> str:
    """Insert ``counts[i]`` copies of the line ``canaries[i]`` at random line breaks of ``text``.

    A *canary* (Carlini et al., 2019) is a made-up secret planted in training data to
    measure afterwards whether the model gives it away.
    """
    if len(canaries) != len(counts) or min(counts, default=0) < 0:
        raise ValueError("give one non-negative count per canary")
    lines = text.split("\n")
    inserts = [c for c, n in zip(canaries, counts) for _ in range(n)]
    g = torch.Generator().manual_seed(seed)
    where = torch.randint(0, len(lines) + 1, (len(inserts),), generator=g).tolist()
    for pos, canary in sorted(zip(where, inserts), key=lambda t: -t[0]):   # from the end: positions stay valid
        lines.insert(pos, canary)
    return "\n".join(lines)


# --------------------------------------------------------------------------- association test


@torch.no_grad()
def sequence_logprob(model: torch.nn.Module, ids: torch.Tensor, start: int) -> torch.Tensor:
    """log P(ids[:, start:] | ids[:, :start]) for each row of ``ids`` (N, T): (N,) in nats.

    The whole sequence must fit in the model's context (T <= block_size + 1).
    """
    if ids.dim() != 2 or not 0 < start < ids.shape[1]:
        raise ValueError(f"ids must be (N, T) with 0 < start < T, got {tuple(ids.shape)} and start={start}")
    if ids.shape[1] > model.config.block_size + 1:
        raise ValueError(f"T={ids.shape[1]} is longer than block_size + 1 = {model.config.block_size + 1}")
    device = next(model.parameters()).device
    ids = ids.to(device)
    was_training = model.training
    model.eval()                                                               # no dropout in a score
    logp = model(ids[:, :-1])[0].log_softmax(dim=-1)                          # (N, T-1, V)
    model.train(was_training)
    picked = logp.gather(2, ids[:, 1:, None]).squeeze(2)                       # (N, T-1) log P(token t | before)
    return picked[:, start - 1:].sum(dim=1).cpu()


def continuation_logprob(model: torch.nn.Module, contexts: Sequence[Sequence[int]],
                         continuation: Sequence[int]) -> torch.Tensor:
    """log P(continuation | context) under ``model`` for each context: (N,) in nats."""
    cont = list(continuation)
    if not cont or not contexts or any(len(c) == 0 for c in contexts):
        raise ValueError("contexts and the continuation must be non-empty")
    return torch.cat([sequence_logprob(model, torch.tensor([list(c) + cont]), len(c)) for c in contexts])


def cooccurrence_lean(tokens: Sequence[str], targets: Sequence[str], group_a: Sequence[str],
                      group_b: Sequence[str], window: int = 5) -> torch.Tensor:
    """How much more often each target word appears near ``group_a`` than near ``group_b`` words.

    For target ``w``: log((a + 1) / (b + 1)), where ``a`` (``b``) counts the words of group A (B)
    within ``window`` tokens of an occurrence of ``w`` (add-one smoothing). Returns (len(targets),).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    stoi: dict[str, int] = {}
    arr = torch.tensor([stoi.setdefault(t, len(stoi)) for t in tokens])        # (N,) word ids
    in_a = torch.zeros(len(stoi) + 1, dtype=torch.bool)
    in_b = torch.zeros(len(stoi) + 1, dtype=torch.bool)
    in_a[[stoi[w] for w in group_a if w in stoi]] = True
    in_b[[stoi[w] for w in group_b if w in stoi]] = True
    padded = torch.cat([torch.full((window,), len(stoi)), arr, torch.full((window,), len(stoi))])  # pad id: in no group
    offsets = torch.tensor([o for o in range(-window, window + 1) if o != 0])
    out = []
    for w in targets:
        if w not in stoi:
            raise ValueError(f"target word {w!r} does not occur in the text")
        pos = (arr == stoi[w]).nonzero().squeeze(1) + window                       # (n,) positions in padded
        near = padded[pos[:, None] + offsets]                                     # (n, 2 window) neighbours
        out.append(math.log((in_a[near].sum().item() + 1) / (in_b[near].sum().item() + 1)))
    return torch.tensor(out)


def association_test(x: Sequence[float], y: Sequence[float], n_perm: int | None = 10_000,
                     seed: int = 0) -> tuple[float, float]:
    """Do the scores of group ``x`` exceed those of group ``y``? ``(effect size d, p-value)``.

    ``d`` is Caliskan et al.'s effect size: the difference of the group means over the
    standard deviation of all scores. The one-sided p-value is the fraction of
    re-labellings of the pooled scores (all of them if ``n_perm`` is None, else
    ``n_perm`` random ones, plus the observed labelling) whose mean difference is at
    least the observed one.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each group needs at least two scores")
    pooled = torch.cat([x, y])
    observed = x.mean() - y.mean()
    d = float(observed / pooled.std())
    n, m = len(pooled), len(x)
    if n_perm is None:                                       # exact: every way to choose the x group
        idx = torch.tensor(list(combinations(range(n), m)))                  # (C(n, m), m)
        sx = pooled[idx].sum(dim=1)
        stat = sx / m - (pooled.sum() - sx) / (n - m)
        return d, float((stat >= observed - 1e-12).double().mean())
    g = torch.Generator().manual_seed(seed)
    perm = torch.rand(n_perm, n, generator=g).argsort(dim=1)                 # (n_perm, n)
    shuffled = pooled[perm]
    stat = shuffled[:, :m].mean(dim=1) - shuffled[:, m:].mean(dim=1)
    return d, float(((stat >= observed - 1e-12).sum() + 1) / (n_perm + 1))
