"""Metrics that catch (and miss) different failures of generated text and images.

:mod:`aigc_helpers.metrics` scores a *model* (perplexity, bits per character)
and judges images (accuracy, confidence, classifier-FID);
:func:`aigc_helpers.decoding.distinct_n` measures repetition. This module adds
the metrics that look at *samples* from other angles. Reading order:

1. :func:`text_bits_per_char` - how likely a model finds a given text
   (held-out text, or a generator's samples);
2. :func:`known_word_rate` - the share of a sample's words that exist in a
   vocabulary (gibberish scores low);
3. :func:`ngram_hashes`, :func:`ngram_index` and :func:`copy_rate` - the share of a sample's
   n-grams found verbatim in the training data (copying scores high);
4. :func:`inception_score` - the Inception Score (Salimans et al., 2016) from a
   classifier's probabilities;
5. :func:`precision_recall` - k-nearest-neighbour precision and recall
   (Kynkäänniemi et al., 2019), which separate fidelity from diversity;
6. :func:`nearest_neighbour_distance` - each sample's distance to its closest
   training example (memorisation scores 0);
7. :func:`cohens_kappa` - agreement between two raters beyond chance, for
   human or LLM-as-judge evaluation.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from .data import words
from .metrics import corpus_loss


@torch.no_grad()
def text_bits_per_char(model: torch.nn.Module, ids: torch.Tensor, block_size: int) -> float:
    """Cross-entropy of the 1-D token ids ``ids`` under ``model``, in bits per token.

    The text is cut into consecutive windows of ``block_size + 1`` tokens (a
    window's last token is the first input of the next); each window predicts
    its tokens 2..T+1 from the ones before, as in training. Tokens after the
    last whole window are left out, so every scored token has a context of the
    same kind. A text shorter than one window is scored as a single window of
    all its tokens (a model with a long context scoring a short sample).
    """
    if ids.dim() != 1 or len(ids) < 2:
        raise ValueError(f"expected a 1-D tensor of at least 2 ids, got shape {tuple(ids.shape)}")
    block_size = min(block_size, len(ids) - 1)
    n_win = (len(ids) - 1) // block_size
    return corpus_loss(model, ids[:n_win * block_size + 1], block_size) / math.log(2)   # whole windows only


def known_word_rate(text: str, vocabulary: set[str]) -> float:
    """Fraction of the words of ``text`` (see :func:`aigc_helpers.data.words`) found in ``vocabulary``."""
    ws = words(text)
    if not ws:
        raise ValueError("the text contains no words")
    return sum(w in vocabulary for w in ws) / len(ws)


_BASE = np.uint64(1_000_003)   # multiplier of the polynomial hash (arithmetic wraps modulo 2^64)


def _as_ids(seq) -> np.ndarray:
    if isinstance(seq, str):
        return np.frombuffer(seq.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if isinstance(seq, torch.Tensor):
        seq = seq.cpu().numpy()
    return np.asarray(seq, dtype=np.int64).astype(np.uint64)


def ngram_hashes(seq, n: int) -> np.ndarray:
    """A 64-bit hash of every n-gram of ``seq`` (a string, a list or a 1-D tensor of ids): shape (len - n + 1,).

    h = sum_j (t_{i+j} + 1) * B^(n-1-j) mod 2^64. Equal n-grams get equal
    hashes; different ones collide with probability about 2^-64.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    t = _as_ids(seq) + np.uint64(1)
    m = len(t) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _BASE + t[j:j + m]
    return h


def ngram_index(reference, n: int) -> np.ndarray:
    """The sorted, unique :func:`ngram_hashes` of ``reference``: build it once, then pass it to :func:`copy_rate`."""
    h = np.sort(ngram_hashes(reference, n))
    return h[np.r_[True, h[1:] != h[:-1]]] if len(h) else h       # drop repeats (np.unique is slower here)


def copy_rate(samples: Iterable, reference, n: int) -> float:
    """Fraction of the n-grams of ``samples`` that occur verbatim in ``reference`` (the training data).

    ``samples`` is a collection of sequences (strings or ids); ``reference`` is
    one sequence, or its :func:`ngram_index` for the same ``n`` (much faster
    when many samples are checked against a long text). With ``n`` long enough
    that held-out text rarely repeats training n-grams (32 characters, say), a
    high rate means the generator copies its training set.
    """
    if isinstance(reference, np.ndarray) and reference.dtype == np.uint64:
        index = reference
        if len(index) > 1 and not (index[1:] > index[:-1]).all():
            raise ValueError("a precomputed reference must be sorted and unique: build it with ngram_index()")
    else:
        index = ngram_index(reference, n)
    hs = [ngram_hashes(s, n) for s in samples]
    hs = np.concatenate(hs) if hs else np.zeros(0, dtype=np.uint64)
    if len(hs) == 0:
        raise ValueError(f"no {n}-grams: every sample is shorter than n={n}")
    if len(index) == 0:
        return 0.0
    pos = np.searchsorted(index, hs).clip(max=len(index) - 1)     # binary search in the sorted index
    return float((index[pos] == hs).mean())


def inception_score(probs: torch.Tensor, eps: float = 1e-12) -> float:
    """Inception Score exp( E_x KL( p(y|x) || p(y) ) ) from class probabilities ``probs`` (N, K).

    It is high (at most K) when every sample is classified confidently *and*
    the classes are used evenly; it never looks at real data, so it cannot
    tell new samples from copies of the training set.
    """
    if probs.dim() != 2 or len(probs) == 0:
        raise ValueError(f"expected probabilities (N, K), got shape {tuple(probs.shape)}")
    if not torch.allclose(probs.sum(-1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-4):
        raise ValueError("each row of probs must sum to 1 (apply softmax first)")
    p = probs.double()
    p_y = p.mean(0, keepdim=True)                                          # (1, K) marginal
    kl = (p * ((p + eps).log() - (p_y + eps).log())).sum(-1)               # (N,)
    return math.exp(kl.mean().item())


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)                                                  # (N, N)
    return d.kthvalue(k + 1, dim=1).values                                 # (N,); the 1st is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of features ``fake`` (M, D) against ``real`` (N, D).

    Each set's manifold is the union of balls around its points, each ball
    reaching the point's k-th nearest neighbour in the same set.
    Precision = share of fake points inside the real manifold (fidelity);
    recall = share of real points inside the fake manifold (diversity).
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two (N, D) feature matrices, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be in [1, {min(len(real), len(fake)) - 1}], got {k}")
    real, fake = real.double(), fake.double()
    r_real, r_fake = _kth_neighbour_radius(real, k), _kth_neighbour_radius(fake, k)   # (N,), (M,)
    d = torch.cdist(fake, real)                                                       # (M, N)
    precision = (d <= r_real[None, :]).any(1).double().mean().item()
    recall = (d.T <= r_fake[None, :]).any(1).double().mean().item()
    return precision, recall


def nearest_neighbour_distance(x: torch.Tensor, reference: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Euclidean distance from each of ``x`` (N, ...) to its nearest item in ``reference`` (M, ...): shape (N,).

    Images are flattened to vectors. A distance of 0 means an exact copy.
    """
    if len(x) == 0 or len(reference) == 0 or x.shape[1:] != reference.shape[1:]:
        raise ValueError(f"expected non-empty sets of the same item shape, got {tuple(x.shape)} and {tuple(reference.shape)}")
    a, b = x.reshape(len(x), -1).double(), reference.reshape(len(reference), -1).double()
    return torch.cat([torch.cdist(a[i:i + batch_size], b).min(1).values for i in range(0, len(a), batch_size)])


def cohens_kappa(confusion: Sequence[Sequence[float]] | torch.Tensor) -> float:
    """Cohen's kappa from a K x K table: ``confusion[i][j]`` = items rater A put in class i and rater B in j.

    kappa = (p_o - p_e) / (1 - p_e): observed agreement p_o (the diagonal) beyond
    the agreement p_e that two raters with the same class frequencies would
    reach by chance. 1 is perfect agreement, 0 is chance level.
    """
    c = torch.as_tensor(confusion, dtype=torch.float64)
    if c.dim() != 2 or c.shape[0] != c.shape[1] or (c < 0).any() or c.sum() == 0:
        raise ValueError("expected a square table of non-negative counts with a positive total")
    p = c / c.sum()
    p_o = p.diagonal().sum()
    p_e = (p.sum(1) * p.sum(0)).sum()       # row marginals (rater A) times column marginals (rater B)
    if p_e == 1:
        raise ValueError("kappa is undefined when both raters always choose the same single class")
    return ((p_o - p_e) / (1 - p_e)).item()
