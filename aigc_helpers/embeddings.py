"""Word embeddings: skip-gram with negative sampling (word2vec, Mikolov et al., 2013).

The pieces, in the order a corpus flows through them:

1. :class:`WordVocab` counts words, keeps the frequent ones and maps them to
   ids. It also gives the two distributions word2vec needs: the *noise*
   distribution for negative samples (unigram counts raised to 0.75) and the
   *keep* probability for subsampling frequent words.
2. :func:`subsample` drops frequent words at random; :func:`skipgram_pairs`
   turns a sequence of ids into ``(center, context)`` pairs within a window.
3. :func:`pair_batches` draws random pairs and ``K`` negatives per pair.
4. :class:`SkipGramNS` holds two embedding tables (center vectors ``v`` and
   context vectors ``u``) and computes the SGNS loss::

       -[ log sigma(u_o . v_c) + sum_k log sigma(-u_k . v_c) ]

5. :func:`nearest` and :func:`analogy` query the learned vectors by cosine
   similarity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- vocabulary


class WordVocab:
    """Words <-> ids, with their corpus counts. Id 0 is the most frequent word.

    >>> vocab = WordVocab.build("to be or not to be".split(), min_count=2)
    >>> vocab.words, vocab.encode(["be", "to"])
    (['be', 'to'], [0, 1])
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int]):
        words, counts = list(words), [int(c) for c in counts]
        if not words:
            raise ValueError("a vocabulary needs at least one word (lower min_count or give more text)")
        if len(words) != len(counts):
            raise ValueError(f"got {len(words)} words but {len(counts)} counts")
        if len(set(words)) != len(words):
            raise ValueError("words must be distinct")
        if min(counts) <= 0:
            raise ValueError("every count must be positive")
        self.words = words
        self.counts = torch.tensor(counts, dtype=torch.float64)  # (V,)
        self.stoi = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 5, max_size: int | None = None) -> "WordVocab":
        """Keep words seen at least ``min_count`` times, at most ``max_size`` of them
        (the most frequent; ties broken alphabetically so the result is reproducible)."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be positive or None, got {max_size}")
        counts = Counter(tokens)
        if not counts:
            raise ValueError("no tokens given: cannot build a vocabulary from empty text")
        kept = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(
                f"no word occurs {min_count} or more times (the most frequent occurs "
                f"{counts.most_common(1)[0][1]} times); lower min_count"
            )
        return cls([w for w, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def __repr__(self) -> str:
        return f"WordVocab(size={len(self)}, tokens={int(self.counts.sum())})"

    def index(self, word: str) -> int:
        """The id of one word; ``ValueError`` (not ``KeyError``) if it is unknown."""
        if word not in self.stoi:
            raise ValueError(f"{word!r} is not in the vocabulary of {len(self)} words")
        return self.stoi[word]

    def encode(self, tokens: Iterable[str], unknown: str = "raise") -> list[int]:
        """Ids of ``tokens``. Words outside the vocabulary raise ``ValueError``
        (``unknown="raise"``) or are left out (``unknown="drop"``, what word2vec does)."""
        if unknown not in ("raise", "drop"):
            raise ValueError(f"unknown must be 'raise' or 'drop', got {unknown!r}")
        tokens = list(tokens)
        if unknown == "raise":
            missing = sorted({t for t in tokens if t not in self.stoi})
            if missing:
                raise ValueError(
                    f"{len(missing)} word(s) not in the vocabulary, e.g. {missing[:5]}; "
                    "pass unknown='drop' to leave them out"
                )
        return [self.stoi[t] for t in tokens if t in self.stoi]

    def decode(self, ids) -> list[str]:
        """Words of ``ids`` (a list or a tensor)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= int(i) < len(self)]
        if bad:
            raise ValueError(f"ids out of range [0, {len(self)}): {bad[:5]}")
        return [self.words[int(i)] for i in ids]

    def noise_distribution(self, power: float = 0.75) -> torch.Tensor:
        """P_n(w) proportional to count(w) ** power, shape ``(V,)``, float32, sums to 1.

        ``power=1`` is the unigram distribution, ``power=0`` the uniform one;
        word2vec's 0.75 sits between, giving rare words more negatives.
        """
        if power < 0:
            raise ValueError(f"power must be non-negative, got {power}")
        p = self.counts ** power                      # (V,)
        return (p / p.sum()).float()

    def keep_probs(self, t: float = 1e-4) -> torch.Tensor:
        """Subsampling: keep each occurrence of word w with probability
        ``min(1, sqrt(t / f(w)))``, where f(w) is its share of the corpus (Mikolov et al., 2013).
        Words rarer than ``t`` are always kept. Shape ``(V,)``."""
        if t <= 0:
            raise ValueError(f"t must be positive, got {t}")
        freq = self.counts / self.counts.sum()        # (V,)
        return (t / freq).sqrt().clamp(max=1.0).float()


# --------------------------------------------------------------------------- training pairs


def _as_ids(ids, name: str = "ids") -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D sequence of word ids, got shape {tuple(ids.shape)}")
    if len(ids) and ids.min() < 0:
        raise ValueError(f"{name} must be non-negative word ids")
    return ids


def subsample(ids, keep: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each token at random, keeping token ``w`` with probability ``keep[w]``.

    Frequent words ("the", "and") carry little information about their
    neighbours; dropping most of them speeds training and lets the window
    reach further.
    """
    ids = _as_ids(ids)
    if len(ids) and ids.max() >= len(keep):
        raise ValueError(f"ids go up to {int(ids.max())} but keep has only {len(keep)} entries")
    mask = torch.rand(len(ids), generator=generator) < keep[ids]   # (N,)
    return ids[mask]


def skipgram_pairs(ids, window: int) -> torch.Tensor:
    """All ``(center, context)`` pairs with ``1 <= |offset| <= window``, shape ``(P, 2)``.

    For a sequence of N ids there are ``2 * sum_{o=1..window} (N - o)`` pairs:
    every word is a center once for each neighbour on either side.
    """
    ids = _as_ids(ids)
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if len(ids) < 2:
        raise ValueError(f"need at least 2 ids to make pairs, got {len(ids)}")
    chunks = []
    for o in range(1, min(window, len(ids) - 1) + 1):
        left, right = ids[:-o], ids[o:]                     # (N - o,) each
        chunks.append(torch.stack([left, right], dim=1))    # context to the right
        chunks.append(torch.stack([right, left], dim=1))    # context to the left
    return torch.cat(chunks)                                # (P, 2)


def sample_negatives(noise: torch.Tensor, shape: tuple[int, ...],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Word ids drawn from the noise distribution ``noise`` (V,), any ``shape``."""
    if noise.dim() != 1 or len(noise) == 0:
        raise ValueError(f"noise must be a non-empty 1-D distribution, got shape {tuple(noise.shape)}")
    n = 1
    for s in shape:
        n *= s
    draws = torch.multinomial(noise, n, replacement=True, generator=generator)  # (n,)
    return draws.view(shape)


def pair_batches(pairs: torch.Tensor, batch_size: int, noise: torch.Tensor, negatives: int,
                 generator: torch.Generator | None = None):
    """A function returning one random batch ``(center (B,), context (B,), negatives (B, K))``,
    ready for :func:`aigc_helpers.train.train`."""
    if pairs.dim() != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"pairs must have shape (P, 2) with P > 0, got {tuple(pairs.shape)}")
    if batch_size < 1 or negatives < 1:
        raise ValueError(f"batch_size and negatives must be positive, got {batch_size}, {negatives}")

    def next_batch():
        ix = torch.randint(len(pairs), (batch_size,), generator=generator)      # (B,)
        center, context = pairs[ix, 0], pairs[ix, 1]                             # (B,), (B,)
        neg = sample_negatives(noise, (batch_size, negatives), generator)        # (B, K)
        return center, context, neg

    return next_batch


# --------------------------------------------------------------------------- the model


@dataclass
class SkipGramConfig:
    vocab_size: int = 4000   # words in the vocabulary (word2vec Google News: 3,000,000)
    dim: int = 64            # embedding size (word2vec: 300)
    negatives: int = 5       # negative samples per pair (word2vec: 5-20 on small data, 2-5 on big)
    init_std: float = 0.1    # std of the random initial vectors


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling: two tables of vectors and a logistic loss.

    ``center_emb`` holds v_w (the vector of w as a center word, the one kept as
    "the word vector"); ``context_emb`` holds u_w (w as a context word).
    The model is trained to give real pairs a high score u_o . v_c and noise
    pairs a low one.
    """

    def __init__(self, config: SkipGramConfig):
        super().__init__()
        if config.vocab_size < 1 or config.dim < 1:
            raise ValueError(f"vocab_size and dim must be positive, got {config.vocab_size}, {config.dim}")
        self.config = config
        self.center_emb = nn.Embedding(config.vocab_size, config.dim)    # v: (V, d)
        self.context_emb = nn.Embedding(config.vocab_size, config.dim)   # u: (V, d)
        nn.init.normal_(self.center_emb.weight, std=config.init_std)
        nn.init.normal_(self.context_emb.weight, std=config.init_std)

    def _check(self, ids: torch.Tensor, name: str) -> None:
        if ids.dtype != torch.long:
            raise ValueError(f"{name} must be a long tensor of word ids, got {ids.dtype}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(
                f"{name} has ids outside [0, {self.config.vocab_size}): "
                f"min {int(ids.min())}, max {int(ids.max())}"
            )

    def score(self, center: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """u_context . v_center for each pair; sigma(score) is the model's
        probability that the pair is real.

        center (B,) with context (B,) -> (B,), or with context (B, C) -> (B, C)
        (one center against C context words, e.g. its whole window).
        """
        self._check(center, "center")
        self._check(context, "context")
        if center.dim() != 1 or context.dim() not in (1, 2) or context.shape[0] != center.shape[0]:
            raise ValueError(
                f"expected center (B,) and context (B,) or (B, C), got "
                f"{tuple(center.shape)} and {tuple(context.shape)}"
            )
        v = self.center_emb(center)                  # (B, d)
        u = self.context_emb(context)                # (B, d) or (B, C, d)
        if context.dim() == 2:
            v = v.unsqueeze(1)                       # (B, 1, d)
        return (u * v).sum(-1)                       # (B,) or (B, C)

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean SGNS loss over the batch:
        ``-[log sigma(u_o . v_c) + sum_k log sigma(-u_k . v_c)]``.

        center (B,), context (B,), negatives (B, K) -> scalar.
        """
        if center.dim() != 1 or center.shape != context.shape:
            raise ValueError(
                f"center and context must be 1-D of the same length, got "
                f"{tuple(center.shape)} and {tuple(context.shape)}"
            )
        if negatives.dim() != 2 or negatives.shape[0] != center.shape[0]:
            raise ValueError(f"negatives must have shape (B={center.shape[0]}, K), got {tuple(negatives.shape)}")
        for t, name in ((center, "center"), (context, "context"), (negatives, "negatives")):
            self._check(t, name)
        v = self.center_emb(center)                              # (B, d)
        u_pos = self.context_emb(context)                        # (B, d)
        u_neg = self.context_emb(negatives)                      # (B, K, d)
        pos = (u_pos * v).sum(-1)                                # (B,)
        neg = (u_neg @ v.unsqueeze(-1)).squeeze(-1)              # (B, K)
        loss = -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1))  # (B,)
        return loss.mean()

    @property
    def word_vectors(self) -> torch.Tensor:
        """The learned word vectors (the center table), detached, shape ``(V, d)``."""
        return self.center_emb.weight.detach()


# --------------------------------------------------------------------------- queries


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    if vectors.dim() != 2 or len(vectors) == 0:
        raise ValueError(f"word_vectors must have shape (V, d) with V > 0, got {tuple(vectors.shape)}")
    return F.normalize(vectors.float(), dim=1)          # (V, d), unit length


def _check_id(i: int, n: int, name: str) -> int:
    i = int(i)
    if not 0 <= i < n:
        raise ValueError(f"{name}={i} is out of range [0, {n})")
    return i


def nearest(word_vectors: torch.Tensor, query_id: int, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` words most similar (cosine) to word ``query_id``, itself left out.

    Returns ``(ids (k,), similarities (k,))``, most similar first.
    """
    unit = _unit_rows(word_vectors)
    q = _check_id(query_id, len(unit), "query_id")
    if not 1 <= k < len(unit):
        raise ValueError(f"k must be between 1 and {len(unit) - 1} (vocabulary minus the query), got {k}")
    sims = unit @ unit[q]                                # (V,)
    sims[q] = -float("inf")                              # never return the query itself
    top = sims.topk(k)
    return top.indices, top.values


def analogy(word_vectors: torch.Tensor, a: int, b: int, c: int, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer "a is to b as c is to ?" with the words nearest (cosine) to b - a + c,
    leaving out a, b and c (Mikolov et al., 2013). Returns ``(ids (k,), similarities (k,))``."""
    unit = _unit_rows(word_vectors)
    ids = [_check_id(x, len(unit), name) for x, name in ((a, "a"), (b, "b"), (c, "c"))]
    if not 1 <= k <= len(unit) - len(set(ids)):
        raise ValueError(f"k must be between 1 and {len(unit) - len(set(ids))}, got {k}")
    target = F.normalize(unit[ids[1]] - unit[ids[0]] + unit[ids[2]], dim=0)   # (d,)
    sims = unit @ target                                                      # (V,)
    sims[ids] = -float("inf")
    top = sims.topk(k)
    return top.indices, top.values
