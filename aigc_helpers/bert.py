"""BERT: a bidirectional Transformer encoder pretrained by filling in blanks (Devlin et al., 2019).

- **Masked language model (MLM)**: pick 15 % of the tokens; replace 80 % of
  those with ``[MASK]``, 10 % with a random token and keep 10 %; predict the
  original token at the picked positions only.
- **Next-sentence prediction (NSP)**: given ``[CLS] A [SEP] B [SEP]``, tell
  whether B followed A in the text (50 %) or was drawn at random (50 %).
- **Fine-tuning**: a classification head on the ``[CLS]`` state.

Tokens here are characters; the special tokens come first in the vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import EncoderBlock

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
PAD, CLS, SEP, MASK = range(4)


@dataclass
class BertConfig:
    vocab_size: int = 70       # characters + 4 special tokens; BERT-base: 30522 WordPieces
    max_len: int = 128         # BERT: 512
    d_model: int = 128         # BERT-base: 768
    n_head: int = 4            # 12
    n_layer: int = 4           # 12
    d_ff: int = 512            # 3072
    dropout: float = 0.1       # 0.1


def mask_tokens(ids: torch.Tensor, vocab_size: int, mask_prob: float = 0.15,
                generator: torch.Generator | None = None, n_special: int = len(SPECIALS)):
    """BERT's masking: returns ``(inputs, labels)``.

    ``labels`` holds the original id at the picked positions and -100 (ignored
    by the loss) elsewhere. Special tokens are never picked.
    """
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    ids = ids.clone()
    labels = torch.full_like(ids, -100)
    can_pick = ids >= n_special
    where = generator.device if generator is not None else ids.device     # draw on the generator's device
    picked = (torch.rand(ids.shape, generator=generator, device=where).to(ids.device) < mask_prob) & can_pick
    labels[picked] = ids[picked]
    roll = torch.rand(ids.shape, generator=generator, device=where).to(ids.device)
    to_mask = picked & (roll < 0.8)                                       # 80 %: [MASK]
    to_random = picked & (roll >= 0.8) & (roll < 0.9)                     # 10 %: a random token
    ids[to_mask] = MASK                                                   # the other 10 %: unchanged
    ids[to_random] = torch.randint(n_special, vocab_size, (int(to_random.sum()),), generator=generator,
                                   device=where).to(ids.device)
    return ids, labels


def make_pair(a: list[int], b: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """``[CLS] a [SEP] b [SEP]`` (a and b cut to fit) and its segment ids (0 for a, 1 for b)."""
    room = max_len - 3
    if room < 2:
        raise ValueError(f"max_len={max_len} leaves no room for two sentences")
    a, b = a[: room // 2], b[: room - min(len(a), room // 2)]
    ids = [CLS] + a + [SEP] + b + [SEP]
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return ids, segments


def nsp_batch(sentences: list[list[int]], batch_size: int, max_len: int, rng: random.Random,
              docs: list[int] | None = None):
    """A batch of sentence pairs for NSP: half true successors, half random sentences.

    ``docs`` (optional, one document id per sentence) keeps every true pair
    inside one document and draws the random sentences from *other*
    documents, as happens by itself in BERT's corpus of millions of documents.

    Returns ``ids`` (B, max_len) padded with [PAD], ``segments`` (B, max_len) and
    ``is_next`` (B,) in {0, 1}.
    """
    if len(sentences) < 3:
        raise ValueError("need at least three sentences")
    if docs is not None:
        if len(docs) != len(sentences):
            raise ValueError(f"docs has {len(docs)} ids for {len(sentences)} sentences; give one per sentence")
        if len(set(docs)) < 2:
            raise ValueError("docs must name at least two documents to draw random sentences from another one")
        starts = [i for i in range(len(sentences) - 1) if docs[i] == docs[i + 1]]
        if not starts:
            raise ValueError("no two consecutive sentences share a document")
    ids = torch.full((batch_size, max_len), PAD, dtype=torch.long)
    segs = torch.zeros((batch_size, max_len), dtype=torch.long)
    is_next = torch.zeros(batch_size, dtype=torch.long)
    for row in range(batch_size):
        i = rng.randrange(len(sentences) - 1) if docs is None else rng.choice(starts)
        if rng.random() < 0.5:
            b, label = sentences[i + 1], 1
        else:
            j = rng.randrange(len(sentences))
            while j in (i, i + 1) or (docs is not None and docs[j] == docs[i]):
                j = rng.randrange(len(sentences))
            b, label = sentences[j], 0
        pair, seg = make_pair(sentences[i], b, max_len)
        ids[row, : len(pair)] = torch.tensor(pair)
        segs[row, : len(seg)] = torch.tensor(seg)
        is_next[row] = label
    return ids, segs, is_next


class Bert(nn.Module):
    """Token + position + segment embeddings, a stack of post-LN encoder blocks (as BERT)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        c = self.config = config
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.max_len, c.d_model)
        self.seg = nn.Embedding(2, c.d_model)
        self.ln = nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout, pre_ln=False)
                                    for _ in range(c.n_layer))

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """Contextual states (B, T, d_model); [PAD] positions are masked out of attention."""
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (B, T), got {tuple(ids.shape)}")
        B, T = ids.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}")
        segments = torch.zeros_like(ids) if segments is None else segments
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device)) + self.seg(segments)  # (B, T, d)
        x = self.drop(self.ln(x))
        keep = (ids != PAD)[:, None, None, :]                          # (B, 1, 1, T): keys that exist
        for block in self.blocks:
            x = block(x, mask=keep)
        return x


class BertPretraining(nn.Module):
    """BERT with its two pretraining heads: MLM (tied to the embedding) and NSP."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = Bert(config)
        d = config.d_model
        self.mlm_transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.nsp_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 2))   # pooler + classifier

    def forward(self, ids, segments=None, mlm_labels=None, is_next=None):
        """Returns ``(mlm_logits (B, T, V), nsp_logits (B, 2), loss)``; the loss sums the heads given."""
        h = self.bert(ids, segments)                                              # (B, T, d)
        mlm_logits = self.mlm_transform(h) @ self.bert.tok.weight.T + self.mlm_bias  # (B, T, V)
        nsp_logits = self.nsp_head(h[:, 0])                                       # [CLS] state
        loss = None
        if mlm_labels is not None:
            loss = F.cross_entropy(mlm_logits.reshape(-1, mlm_logits.shape[-1]), mlm_labels.reshape(-1),
                                   ignore_index=-100)
        if is_next is not None:
            nsp = F.cross_entropy(nsp_logits, is_next)
            loss = nsp if loss is None else loss + nsp
        return mlm_logits, nsp_logits, loss


class BertClassifier(nn.Module):
    """A pretrained (or fresh) BERT encoder with a classification head on [CLS]."""

    def __init__(self, bert: Bert, n_classes: int, dropout: float = 0.1):
        super().__init__()
        if n_classes < 2:
            raise ValueError("a classifier needs at least two classes")
        self.bert = bert
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(bert.config.d_model, n_classes))

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.bert(ids)[:, 0])                                  # (B, n_classes)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss
