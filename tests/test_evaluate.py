import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import entropy
from sklearn.metrics import cohen_kappa_score
from sklearn.neighbors import NearestNeighbors

from aigc_helpers import evaluate
from aigc_helpers.gpt import GPT, GPTConfig


def test_text_bits_per_char_matches_cross_entropy():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(0, 11, (8 * 3 + 5,))
    got = evaluate.text_bits_per_char(model, ids, 8)
    # independent: run each window on its own and average the per-token losses by hand
    losses = []
    for w in range(3):
        x, y = ids[w * 8:(w + 1) * 8], ids[w * 8 + 1:(w + 1) * 8 + 1]
        logits, _ = model(x[None])
        losses.append(torch.nn.functional.cross_entropy(logits[0], y, reduction="none"))
    assert got == pytest.approx(torch.cat(losses).mean().item() / math.log(2), rel=1e-5)
    # a text shorter than one window is one window of all its tokens
    short = ids[:6]
    logits, _ = model(short[None, :-1])
    want = torch.nn.functional.cross_entropy(logits[0], short[1:]).item() / math.log(2)
    assert evaluate.text_bits_per_char(model, short, 8) == pytest.approx(want, rel=1e-5)
    for bad in (ids[:1], ids.view(1, -1)):
        with pytest.raises(ValueError):
            evaluate.text_bits_per_char(model, bad, 8)


def test_known_word_rate():
    assert evaluate.known_word_rate("The cat sat; the dog ran.", {"the", "cat", "dog"}) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        evaluate.known_word_rate("123 !!", {"a"})


def test_ngram_hashes_equal_iff_equal_ngrams():
    s = "abcabcxabc"
    h = evaluate.ngram_hashes(s, 3)
    grams = [s[i:i + 3] for i in range(len(s) - 2)]
    assert len(h) == len(grams)
    for i in range(len(grams)):
        for j in range(len(grams)):
            assert (h[i] == h[j]) == (grams[i] == grams[j])
    # strings and id lists give the same hashes when the ids are the code points
    assert np.array_equal(evaluate.ngram_hashes([ord(c) for c in s], 3), h)
    assert np.array_equal(evaluate.ngram_hashes(torch.tensor([ord(c) for c in s]), 3), h)
    # order matters
    assert evaluate.ngram_hashes("ab", 2)[0] != evaluate.ngram_hashes("ba", 2)[0]
    # n-grams that differ only in their first id differ
    assert evaluate.ngram_hashes([0, 5], 2)[0] != evaluate.ngram_hashes([5, 5], 2)[0]


def test_copy_rate_against_substring_search():
    rng = np.random.default_rng(0)
    alphabet = "abcd"
    reference = "".join(rng.choice(list(alphabet), 3000))
    samples = [reference[100:160], "".join(rng.choice(list(alphabet), 60)), reference[500:530] + "dddddddddd"]
    n = 6
    expected = np.mean([s[i:i + n] in reference for s in samples for i in range(len(s) - n + 1)])
    assert evaluate.copy_rate(samples, reference, n) == pytest.approx(expected)
    index = evaluate.ngram_index(reference, n)
    assert np.all(index[1:] > index[:-1])
    assert evaluate.copy_rate(samples, index, n) == pytest.approx(expected)
    assert evaluate.copy_rate([reference[:50]], index, n) == 1.0
    with pytest.raises(ValueError):
        evaluate.copy_rate(["abc"], reference, n)
    with pytest.raises(ValueError):
        evaluate.copy_rate(samples, index[::-1].copy(), n)


def test_inception_score_against_scipy():
    torch.manual_seed(0)
    p = torch.randn(50, 5).mul(2).softmax(-1)
    pn = p.double().numpy()
    expected = np.exp(np.mean([entropy(row, pn.mean(0)) for row in pn]))
    assert evaluate.inception_score(p) == pytest.approx(expected, rel=1e-6)
    # extremes: one-hot and balanced -> K; all identical -> 1
    assert evaluate.inception_score(torch.eye(4).repeat(3, 1)) == pytest.approx(4.0, rel=1e-6)
    assert evaluate.inception_score(p[:1].repeat(10, 1)) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError):
        evaluate.inception_score(torch.ones(3, 4))


def _pr_sklearn(real, fake, k):
    r_real = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, -1]
    r_fake = NearestNeighbors(n_neighbors=k + 1).fit(fake).kneighbors(fake)[0][:, -1]
    d = cdist(fake, real)
    return (d <= r_real[None]).any(1).mean(), (d.T <= r_fake[None]).any(1).mean()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_against_sklearn(k):
    g = torch.Generator().manual_seed(k)
    real = torch.randn(200, 4, generator=g)
    fake = torch.randn(150, 4, generator=g) + torch.tensor([3.0, 0, 0, 0])
    p, r = evaluate.precision_recall(real, fake, k=k)
    ep, er = _pr_sklearn(real.double().numpy(), fake.double().numpy(), k)
    assert (p, r) == pytest.approx((ep, er))
    assert 0 < p < 1 and 0 < r < 1


def test_precision_recall_directions():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 2, generator=g)
    same = torch.randn(300, 2, generator=g)
    collapsed = 0.1 * torch.randn(300, 2, generator=g)          # inside the real support, not diverse
    far = torch.randn(300, 2, generator=g) + 6.0                 # neither
    p_same, r_same = evaluate.precision_recall(real, same)
    p_col, r_col = evaluate.precision_recall(real, collapsed)
    p_far, r_far = evaluate.precision_recall(real, far)
    assert p_same > 0.8 and r_same > 0.8
    assert p_col > 0.95 and r_col < 0.3
    assert p_far < 0.05 and r_far < 0.05
    with pytest.raises(ValueError):
        evaluate.precision_recall(real, far[:, :1])
    with pytest.raises(ValueError):
        evaluate.precision_recall(real, far, k=300)


def test_nearest_neighbour_distance():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(40, 1, 3, 3, generator=g)
    x = torch.cat([ref[:5], torch.rand(7, 1, 3, 3, generator=g)])
    d = evaluate.nearest_neighbour_distance(x, ref, batch_size=4)
    expected = cdist(x.reshape(12, -1).double().numpy(), ref.reshape(40, -1).double().numpy()).min(1)
    assert np.allclose(d.numpy(), expected, atol=1e-6)
    assert (d[:5] < 1e-6).all() and (d[5:] > 1e-3).all()
    with pytest.raises(ValueError):
        evaluate.nearest_neighbour_distance(x, ref.reshape(40, -1))


def test_cohens_kappa_against_sklearn():
    table = [[20, 5, 2], [3, 15, 4], [1, 2, 8]]
    a = np.repeat(np.arange(3), np.sum(table, 1))
    b = np.concatenate([np.repeat(np.arange(3), row) for row in table])
    assert evaluate.cohens_kappa(table) == pytest.approx(cohen_kappa_score(a, b))
    # asymmetric marginals matter: transposing swaps the raters, kappa stays the same
    assert evaluate.cohens_kappa(np.array(table).T.tolist()) == pytest.approx(cohen_kappa_score(b, a))
    assert evaluate.cohens_kappa([[10, 0], [0, 5]]) == pytest.approx(1.0)
    assert evaluate.cohens_kappa([[25, 25], [25, 25]]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        evaluate.cohens_kappa([[1, 2, 3]])
    with pytest.raises(ValueError):
        evaluate.cohens_kappa([[5, 0], [0, 0]])
