"""Supervised fine-tuning: a pretrained GPT becomes a text classifier.

GPT-1 (Radford et al., 2018) was trained in two stages: first a language
model on plenty of unlabelled text, then the same network, plus one linear
layer, on a small labelled task. This module holds the second stage:

- ``speeches``, ``speech_text``: the spoken words of a play (no speaker names, stage
  directions or headings), so a classifier cannot read the answer off a tag;
- ``snippet_dataset``: fixed-length labelled snippets from several texts,
  split *by position* inside each text (the test snippets come from the end,
  never overlapping a training snippet);
- ``GPTClassifier``: a GPT body with a classification head on the pooled
  hidden states, called as ``model(idx, targets=None) -> (logits, loss)``;
- ``accuracy``: the fraction of snippets classified correctly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import CharTokenizer
from .gpt import GPT

# A speaker tag is a block's first line made of 1-4 capitalised words and a full stop:
# "HAMLET.", "Ham.", "SIR TOBY.", "First Lord." (but not "No more.").
_SPEAKER = re.compile(r"^(?:[A-Z][A-Za-z'&-]*\s+){0,3}[A-Z][A-Za-z'&-]*\.$")
_STAGE = re.compile(r"\[[^\]]*\]?")          # [Enter ...], [Exit.], [Aside.] (possibly unclosed)


def speeches(play: str) -> list[tuple[str, str]]:
    """The speeches of a play as ``(speaker, text)`` pairs, in order.

    A speech is a blank-line separated block whose first line is a speaker tag;
    stage directions in brackets and indentation are removed. Blocks without a
    tag (titles, lists of characters, act and scene headings) are skipped.
    """
    out = []
    for block in re.split(r"\n\s*\n", play):
        lines = [ln.strip() for ln in block.strip("\n").split("\n")]
        if len(lines) < 2 or not _SPEAKER.match(lines[0]):
            continue
        body = [_STAGE.sub("", ln).strip() for ln in lines[1:]]
        body = [re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", ln)) for ln in body if ln]
        if body:
            out.append((lines[0][:-1], "\n".join(body)))
    return out


def speech_text(play: str) -> str:
    """Only the spoken words of ``play``: its speeches joined by blank lines."""
    text = "\n\n".join(body for _, body in speeches(play))
    if not text:
        raise ValueError("found no speeches (blocks that start with a speaker tag such as 'HAMLET.')")
    return text


@dataclass
class SnippetData:
    """Labelled snippets: ``x`` holds token ids (N, length), ``y`` class ids (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    def decode(self, tokenizer: CharTokenizer, split: str = "train", i: int = 0) -> tuple[str, str]:
        """``(snippet text, class name)`` of example ``i``."""
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        return tokenizer.decode(x[i]), self.classes[int(y[i])]


def snippet_dataset(texts: dict[str, str], tokenizer: CharTokenizer, length: int, n_train: int,
                    n_test: int, test_frac: float = 0.2, seed: int = 0) -> SnippetData:
    """Cut each text into non-overlapping snippets of ``length`` characters, labelled by the text's name.

    The first ``1 - test_frac`` of every text gives the training pool and the
    rest the test pool, so no test snippet overlaps a training one. From each
    pool ``n_train`` (``n_test``) snippets per class are drawn at random (seeded).
    """
    if len(texts) < 2:
        raise ValueError(f"need at least two texts (classes), got {len(texts)}")
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac must be between 0 and 1, got {test_frac}")
    if length < 1 or n_train < 1 or n_test < 1:
        raise ValueError("length, n_train and n_test must be positive")
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for label, text in enumerate(texts.values()):
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        snippets = ids[: len(ids) // length * length].view(-1, length)          # (S, length)
        cut = int(len(snippets) * (1 - test_frac))
        for split, pool, n in (("train", snippets[:cut], n_train), ("test", snippets[cut:], n_test)):
            if len(pool) < n:
                name = list(texts)[label]
                raise ValueError(f"{name!r} has only {len(pool)} {split} snippets of length {length}; "
                                 f"asked for {n}")
            pick = torch.randperm(len(pool), generator=g)[:n]
            parts[f"{split}_x"].append(pool[pick])
            parts[f"{split}_y"].append(torch.full((n,), label))
    return SnippetData(*(torch.cat(parts[k]) for k in ("train_x", "train_y", "test_x", "test_y")),
                       classes=list(texts))


class GPTClassifier(nn.Module):
    """A GPT body (embeddings, blocks, final LayerNorm) and a linear head over pooled hidden states.

    ``pool="last"`` classifies from the last position, as GPT-1 did (the only
    position that has seen the whole input); ``pool="mean"`` averages every
    position. The GPT's language-model head is not used.
    """

    def __init__(self, gpt: GPT, n_classes: int, pool: str = "mean", dropout: float = 0.1):
        super().__init__()
        if n_classes < 2:
            raise ValueError("a classifier needs at least two classes")
        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}")
        self.gpt, self.pool = gpt, pool
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(gpt.config.n_embd, n_classes))
        nn.init.normal_(self.head[1].weight, std=0.02)
        nn.init.zeros_(self.head[1].bias)

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """The pooled hidden state: (B, T) token ids -> (B, n_embd)."""
        if idx.dim() != 2 or not 0 < idx.shape[1] <= self.gpt.config.block_size:
            raise ValueError(f"idx must have shape (B, T) with 0 < T <= block_size={self.gpt.config.block_size}, "
                             f"got {tuple(idx.shape)}")
        g = self.gpt
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = g.drop(g.wte(idx) + g.wpe(pos))                          # (B, T, C)
        for block in g.blocks:
            x = block(x)
        x = g.ln_f(x)                                                # (B, T, C)
        return x.mean(dim=1) if self.pool == "mean" else x[:, -1]     # (B, C)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.features(idx))                        # (B, n_classes)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of rows of ``x`` whose predicted class (argmax of ``model(x)[0]``) equals ``y``."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum((model(x[i:i + batch_size].to(device))[0].argmax(-1).cpu() == y[i:i + batch_size].cpu()).sum().item()
                  for i in range(0, len(x), batch_size))
    model.train(was_training)
    return correct / len(x)
