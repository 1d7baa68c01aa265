"""Toy sequence-to-sequence tasks: reverse, sort or copy a short string.

An encoder-decoder Transformer is easiest to understand on a task whose right
answer we know and whose solution we can *see* in the attention weights.
Reversing ``"hello"`` into ``"olleh"`` is one: the decoder's cross-attention has
to look at the source from the last position to the first, an anti-diagonal.

The vocabulary puts three special tokens first, then one token per symbol::

    0 <pad>   fills the end of shorter sequences in a batch; ignored by the loss
    1 <bos>   "beginning of sequence": the decoder's first input
    2 <eos>   "end of sequence": the decoder's last output, so it knows when to stop

A batch for teacher forcing is ``(src, tgt_in, tgt_out)``::

    text "abc", task "reverse", answer "cba"
    src     = [a, b, c]
    tgt_in  = [<bos>, c, b, a]        what the decoder reads
    tgt_out = [c, b, a, <eos>]        what it must predict: tgt_in shifted left by one
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
KINDS = ("reverse", "sort", "copy")


@dataclass
class SequenceTask:
    """Map a string of ``symbols`` (length ``min_len`` .. ``max_len``) to its answer.

    ``kind`` is ``"reverse"`` (``"abc" -> "cba"``), ``"sort"`` (``"cab" -> "abc"``,
    in the order of ``symbols``) or ``"copy"`` (``"abc" -> "abc"``).
    """

    kind: str = "reverse"
    symbols: str = "abcdefghijklmnopqrstuvwxyz"
    min_len: int = 3
    max_len: int = 10

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols must be a non-empty string without repeats, got {self.symbols!r}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={self.min_len}, max_len={self.max_len}")
        self._index = {s: i + len(SPECIALS) for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids: the three specials plus one per symbol."""
        return len(SPECIALS) + len(self.symbols)

    @property
    def n_strings(self) -> int:
        """How many different inputs the task has (sum over lengths of |symbols|^length)."""
        return sum(len(self.symbols) ** n for n in range(self.min_len, self.max_len + 1))

    def solve(self, text: str) -> str:
        """The right answer for ``text``."""
        self._check(text)
        if self.kind == "reverse":
            return text[::-1]
        if self.kind == "sort":
            return "".join(sorted(text, key=self._index.__getitem__))
        return text

    def _check(self, text: str) -> None:
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        unknown = sorted(set(text) - set(self.symbols))
        if unknown:
            raise ValueError(f"unknown symbols {unknown} in {text!r}; use only {self.symbols!r}")
        if not self.min_len <= len(text) <= self.max_len:
            raise ValueError(f"{text!r} has length {len(text)}; the task uses lengths "
                             f"{self.min_len} to {self.max_len}")

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no specials)."""
        self._check(text)
        return [self._index[s] for s in text]

    def decode(self, ids) -> str:
        """Text of ``ids``: stops at the first ``<eos>``, skips ``<pad>`` and ``<bos>``."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == EOS:
                break
            if i >= len(SPECIALS):
                if i >= self.vocab_size:
                    raise ValueError(f"token id {i} is outside the vocabulary of size {self.vocab_size}")
                out.append(self.symbols[i - len(SPECIALS)])
        return "".join(out)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[str]:
        """``n`` random inputs: a uniform length, then uniform symbols."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=generator)
        picks = torch.randint(0, len(self.symbols), (n, self.max_len), generator=generator)
        return ["".join(self.symbols[j] for j in row[:k]) for row, k in zip(picks.tolist(), lengths.tolist())]

    def split(self, n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
        """Two lists of *distinct* inputs with no string in both: a training set and a held-out set."""
        if n_train < 0 or n_test < 0:
            raise ValueError("n_train and n_test must be non-negative")
        if n_train + n_test > self.n_strings // 2:
            raise ValueError(f"asked for {n_train + n_test} distinct strings but the task has only "
                             f"{self.n_strings}; ask for at most half of them")
        g = torch.Generator().manual_seed(seed)
        seen: dict[str, None] = {}            # an ordered set: reruns give the same lists
        while len(seen) < n_train + n_test:
            for text in self.sample(n_train + n_test - len(seen), g):
                seen[text] = None
        texts = list(seen)
        return texts[:n_train], texts[n_train:]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded tensors ``(src, tgt_in, tgt_out)`` for teacher forcing.

        ``src`` is (B, S) with S the longest input; ``tgt_in`` and ``tgt_out`` are
        (B, S + 1): ``<bos>`` + answer and answer + ``<eos>``, padded with ``<pad>``.
        """
        if not texts:
            raise ValueError("texts is empty; pass at least one string")
        S = max(len(t) for t in texts)
        src, tgt_in, tgt_out = [], [], []
        for text in texts:
            x, y = self.encode(text), self.encode(self.solve(text))
            src.append(x + [PAD] * (S - len(x)))                       # padded to (S,)
            tgt_in.append([BOS] + y + [PAD] * (S - len(y)))            # (S + 1,)
            tgt_out.append(y + [EOS] + [PAD] * (S - len(y)))           # (S + 1,)
        return tuple(torch.tensor(rows, dtype=torch.long) for rows in (src, tgt_in, tgt_out))
