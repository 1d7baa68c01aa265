import random

import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.bert import CLS, MASK, PAD, SEP, Bert, BertClassifier, BertConfig, BertPretraining, make_pair, mask_tokens, nsp_batch


def test_mlm_masking_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50, (400, 250), generator=g)
    inputs, labels = mask_tokens(ids, 50, generator=g)
    picked = labels != -100
    frac = picked.float().mean().item()
    assert frac == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[picked], ids[picked])
    n = picked.sum().item()
    masked = (inputs[picked] == MASK).sum().item() / n
    kept = (inputs[picked] == ids[picked]).sum().item() / n
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / 46, abs=0.01)   # 10 % kept (+ random draws that hit the same id)
    assert torch.equal(inputs[~picked], ids[~picked])


def test_random_replacements_are_never_special_tokens():
    """A picked token becomes [MASK], stays, or becomes a random ordinary token (id >= 4), never [PAD]/[CLS]/[SEP]."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50, (400, 250), generator=g)
    inputs, labels = mask_tokens(ids, 50, generator=g)
    picked = labels != -100
    replaced = inputs[picked & (inputs != MASK) & (inputs != ids)]
    assert len(replaced) > 1000                                   # about 10 % of 15,000 picked tokens
    assert replaced.min() >= 4 and replaced.max() < 50
    assert len(replaced.unique()) == 46                           # every ordinary token can be drawn


def test_special_tokens_are_never_masked():
    ids = torch.tensor([[CLS, 5, 6, SEP, 7, SEP, PAD, PAD]] * 200)
    _, labels = mask_tokens(ids, 20, mask_prob=0.5, generator=torch.Generator().manual_seed(0))
    assert (labels[:, [0, 3, 5, 6, 7]] == -100).all()


def test_pairs_and_nsp_batches():
    ids, seg = make_pair([5, 6, 7], [8, 9], 16)
    assert ids == [CLS, 5, 6, 7, SEP, 8, 9, SEP] and seg == [0, 0, 0, 0, 0, 1, 1, 1]
    sentences = [[i + 4] * 3 for i in range(20)]
    x, s, y = nsp_batch(sentences, 400, 12, random.Random(0))
    assert x.shape == s.shape == (400, 12) and set(y.tolist()) == {0, 1}
    assert 0.4 < y.float().mean().item() < 0.6
    for row, label in zip(x, y):     # a true pair's second sentence is the next one
        a, b = row[1].item(), row[5].item()
        assert (b == a + 1) == bool(label)


def test_bert_shapes_padding_and_heads():
    set_seed(0)
    cfg = BertConfig(vocab_size=30, max_len=16, d_model=32, n_head=2, n_layer=2, d_ff=64, dropout=0.0)
    model = BertPretraining(cfg).eval()
    ids = torch.tensor([[CLS, 5, 6, SEP, 7, 8, SEP, PAD, PAD]])
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0, 0]])
    mlm, nsp, loss = model(ids, seg, mlm_labels=torch.full_like(ids, -100).index_fill(1, torch.tensor([1]), 5),
                           is_next=torch.tensor([1]))
    assert mlm.shape == (1, 9, 30) and nsp.shape == (1, 2) and loss.item() > 0
    # padding is invisible to real tokens
    h1 = model.bert(ids, seg)[:, :7]
    h2 = model.bert(ids[:, :7], seg[:, :7])
    assert torch.allclose(h1, h2, atol=1e-5)
    clf = BertClassifier(model.bert, 3)
    logits, loss = clf(ids, torch.tensor([2]))
    assert logits.shape == (1, 3)
    with pytest.raises(ValueError):
        Bert(cfg)(torch.zeros(1, 20, dtype=torch.long))
    with pytest.raises(ValueError):
        mask_tokens(ids, 30, mask_prob=0)


def test_nsp_batch_with_documents_keeps_true_pairs_inside_and_draws_negatives_outside():
    sentences = [[i + 4] * 3 for i in range(20)]          # sentence i is the token i + 4, three times
    docs = [0] * 10 + [1] * 10
    x, _, y = nsp_batch(sentences, 400, 12, random.Random(0), docs=docs)
    assert 0.4 < y.float().mean().item() < 0.6
    for row, label in zip(x, y):
        a, b = row[1].item() - 4, row[5].item() - 4
        if label:
            assert b == a + 1 and docs[a] == docs[b]      # the true successor, never across documents
        else:
            assert docs[a] != docs[b]                      # a random sentence from the other document
    assert 9 not in {row[1].item() - 4 for row in x}      # the last sentence of a document starts no pair
    with pytest.raises(ValueError, match="one per sentence"):
        nsp_batch(sentences, 4, 12, random.Random(0), docs=[0] * 19)
    with pytest.raises(ValueError, match="at least two documents"):
        nsp_batch(sentences, 4, 12, random.Random(0), docs=[0] * 20)
