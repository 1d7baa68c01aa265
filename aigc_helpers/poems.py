"""Tang poems end to end: a small Chinese corpus, its checks of form and of copying.

The text-generation project of the book (seed 002, §5) on 300 Tang poems. Reading order:

1. :class:`Poem`, :func:`parse_poems` - title, author and body out of the raw records;
2. :func:`split_poems`, :func:`poem_dataset` - split by *poem*, one character vocabulary,
   every poem written as ``BOS + body + EOS`` so a model learns where a poem ends;
3. :func:`corpus_loss` - the exact loss of a language model on a whole split;
4. :class:`KeepBest` - early stopping: remember the weights of the best validation loss;
5. :func:`generate_poems` - prompt, sample, cut at ``EOS``;
6. :func:`clause_lengths`, :func:`line_form`, :func:`poem_form` and their rates - is a text
   regular verse (every clause 5 or 7 characters, each closed by punctuation)?
7. :func:`longest_shared_substring` - how long a passage a text shares with the training set.

Nothing here plots or prints; the notebook does that.
"""

from __future__ import annotations

import collections
import random
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import train
from .data import CharTokenizer, TextData
from .metrics import corpus_loss  # noqa: F401  (the exact loss over a split; lives in metrics)

BOS, EOS = "^", "$"                # start and end of a poem; neither occurs in the corpus
CLAUSE_END = "，。？！；："          # punctuation that closes a clause
LINE_END = "。？！；"               # punctuation that may close a line (a couplet)


@dataclass
class Poem:
    title: str
    author: str
    body: str          # the lines, separated by "\n"

    def text(self) -> str:
        """What a language model reads: ``BOS + body + EOS``."""
        return BOS + self.body + EOS


def parse_poems(records: list[str]) -> list[Poem]:
    """Parse records ``'《title》\\nauthor\\nline\\nline...'`` (as :func:`load_tang_poems` returns).

    Cleaning: spaces (ASCII and full-width) are removed, empty lines dropped.
    """
    poems = []
    for i, rec in enumerate(records):
        lines = [re.sub(r"[ \u3000\t\r]", "", line) for line in rec.split("\n")]
        lines = [line for line in lines if line]
        if len(lines) < 3 or not (lines[0].startswith("《") and lines[0].endswith("》")):
            raise ValueError(f"record {i} is not '《title》\\nauthor\\nbody': {rec[:40]!r}")
        body = "\n".join(lines[2:])
        if BOS in body or EOS in body:
            raise ValueError(f"record {i} contains the reserved characters {BOS!r} or {EOS!r}")
        poems.append(Poem(lines[0][1:-1], lines[1], body))
    return poems


def split_poems(poems: list, val_frac: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Shuffle whole poems with ``seed`` and hold out ``val_frac`` of them (at least one in each split)."""
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac}")
    if len(poems) < 2:
        raise ValueError("need at least two poems to split")
    order = list(range(len(poems)))
    random.Random(seed).shuffle(order)
    n_val = min(len(poems) - 1, max(1, round(val_frac * len(poems))))
    return [poems[i] for i in order[n_val:]], [poems[i] for i in order[:n_val]]


def poem_dataset(train: list[Poem], val: list[Poem]) -> TextData:
    """One character vocabulary over both splits; each split is its poems' texts, concatenated.

    The vocabulary is fixed before training, as a tokenizer is; characters that occur only in
    validation poems keep their untrained initial embeddings.
    """
    train_text = "".join(p.text() for p in train)
    val_text = "".join(p.text() for p in val)
    tok = CharTokenizer.from_text(train_text + val_text)
    return TextData(train_text + val_text, tok, tok.encode_tensor(train_text),
                    tok.encode_tensor(val_text))


class KeepBest(train.KeepBest):
    """An ``eval_fn`` for :func:`aigc_helpers.train.train` that also does early stopping.

    Each call measures ``{"train_loss", "val_loss"}`` with :func:`corpus_loss` (the train loss
    on the first ``train_chars`` training characters, all of them if ``None``) and keeps a copy
    of the weights whenever ``val_loss`` is the lowest so far; :meth:`restore` loads them back.
    """

    def __init__(self, data: TextData, block_size: int, train_chars: int | None = None):
        super().__init__()
        self.data, self.block_size = data, block_size
        self.train_ids = data.train if train_chars is None else data.train[:train_chars]   # a sample: faster

    def measure(self, model: torch.nn.Module) -> dict[str, float]:
        return {"train_loss": corpus_loss(model, self.train_ids, self.block_size),
                "val_loss": corpus_loss(model, self.data.val, self.block_size)}


@torch.no_grad()
def generate_poems(model, tok: CharTokenizer, prompts: list[str], max_new_tokens: int = 100,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0, finished_only: bool = True) -> list[str | None]:
    """One poem per prompt: ``BOS + prompt`` continued until ``EOS``; returns the bodies.

    ``model`` is a language model with ``generate`` (GPT, GRU) or a
    :class:`~aigc_helpers.ngram.CountBigramLM` (its ``sample``). A poem that has not
    ended after ``max_new_tokens`` characters is returned as ``None`` (unfinished), or, with
    ``finished_only=False``, as its complete lines so far (possibly ``""``).
    """
    if not prompts:
        raise ValueError("give at least one prompt (a first character or line)")
    g = torch.Generator().manual_seed(seed)
    texts = [BOS + p for p in prompts]
    if hasattr(model, "generate"):
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(seed)     # the model samples on its own device
        out = []
        for length in sorted({len(t) for t in texts}):          # a batch per prompt length
            idx = [i for i, t in enumerate(texts) if len(t) == length]
            x = torch.tensor([tok.encode(texts[i]) for i in idx], device=device)    # (B, length)
            y = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=g)
            out += [(i, tok.decode(row)) for i, row in zip(idx, y.cpu())]
        decoded = [s for _, s in sorted(out)]
    else:
        if top_k is not None or top_p is not None:
            raise ValueError("the count bigram model samples with temperature only")
        decoded = [tok.decode(model.sample(torch.tensor(tok.encode(t)), max_new_tokens, temperature, g))
                   for t in texts]
    bodies = []
    for s in decoded:
        s = s[len(BOS):]
        if EOS in s:
            bodies.append(s[:s.index(EOS)])
        else:                                                    # unfinished: None, or its complete lines
            bodies.append(None if finished_only else s[:max(0, s.rfind("\n"))])
    return bodies


def poem_form(body: str | None) -> int | None:
    """5 or 7 if ``body`` is regular verse, else ``None``.

    Regular: at least four clauses, all of the same length (5 or 7 characters), each closed by
    a punctuation mark; every line holds an even number of clauses and ends with ``LINE_END``.
    """
    if not body:
        return None
    lengths = set()
    n_clauses = 0
    for line in body.split("\n"):
        clauses = re.findall(f"([^{CLAUSE_END}]+)([{CLAUSE_END}])", line)
        if not clauses or "".join(a + b for a, b in clauses) != line:
            return None                                  # text after the last punctuation mark
        if len(clauses) % 2 or clauses[-1][1] not in LINE_END:
            return None
        lengths |= {len(a) for a, _ in clauses}
        n_clauses += len(clauses)
    if n_clauses < 4 or len(lengths) != 1:
        return None
    n = lengths.pop()
    return n if n in (5, 7) else None


def clause_lengths(texts: list[str | None]) -> collections.Counter:
    """How many clauses (runs of characters closed by a mark in ``CLAUSE_END``) have each length.

    Text after the last punctuation mark of a line is not a finished clause and is not counted.
    """
    return collections.Counter(len(c) for t in texts if t for line in t.split("\n")
                               for c in re.findall(f"([^{CLAUSE_END}]+)[{CLAUSE_END}]", line))


def line_form(line: str) -> int | None:
    """5 or 7 if ``line`` is one regular couplet, ``'xxxxx，xxxxx。'`` (or 7 + 7), else ``None``."""
    m = re.fullmatch(f"([^{CLAUSE_END}]+)[，；]([^{CLAUSE_END}]+)[{LINE_END}]", line)
    if m is None or len(m.group(1)) != len(m.group(2)) or len(m.group(1)) not in (5, 7):
        return None
    return len(m.group(1))


def line_form_rate(texts: list[str | None]) -> float:
    """The fraction of complete lines in ``texts`` that are regular couplets (:func:`line_form`).

    A complete line is one followed by a newline or by the end of a finished poem; the cut-off
    last line of an unfinished sample is not counted. ``None`` entries are skipped.
    """
    lines = [line for t in texts if t for line in t.split("\n")]
    if not lines:
        raise ValueError("no complete lines to check")
    return sum(line_form(line) is not None for line in lines) / len(lines)


def form_rate(bodies: list[str | None]) -> float:
    """The fraction of ``bodies`` that are regular verse (an unfinished ``None`` counts as not)."""
    if not bodies:
        raise ValueError("no poems to check")
    return sum(poem_form(b) is not None for b in bodies) / len(bodies)


def longest_shared_substring(text: str, corpus: str) -> str:
    """The longest substring of ``text`` that also occurs in ``corpus`` (the first if tied).

    One pass with a growing length ``L``: at each start ``i`` try to extend the best match
    found so far by one character; O(len(text)) substring searches in all.
    """
    best_i, best = 0, 0
    for i in range(len(text)):
        while i + best < len(text) and text[i:i + best + 1] in corpus:
            best_i, best = i, best + 1
    return text[best_i:best_i + best]
