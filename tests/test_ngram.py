"""Tests of aigc_helpers.ngram: unigram and bigram language models, counted and learned."""

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.ngram import (BigramLM, CountBigramLM, UnigramLM, count_bigrams, loss_from_counts,
                                sample_from_logits)
from aigc_helpers.train import train

torch.set_num_threads(1)   # tiny tensors: thread coordination costs more than the arithmetic


def _random_ids(n=2000, v=7, seed=0, floor=0.0):
    """A Markov chain with a random transition matrix, so bigram statistics are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    trans = torch.rand(v, v, generator=g) ** 3 + floor
    trans = trans / trans.sum(1, keepdim=True)
    ids = [0]
    for _ in range(n - 1):
        ids.append(int(torch.multinomial(trans[ids[-1]], 1, generator=g)))
    return torch.tensor(ids)


# --------------------------------------------------------------------------- counting


def test_count_bigrams_by_hand():
    c = count_bigrams([0, 1, 1, 2, 0, 1], 3)
    expected = torch.zeros(3, 3)
    expected[0, 1], expected[1, 1], expected[1, 2], expected[2, 0] = 2, 1, 1, 1
    assert torch.equal(c, expected)


def test_count_bigrams_matches_a_counter():
    ids = _random_ids(500, 5)
    c = count_bigrams(ids, 5)
    counter = Counter(zip(ids[:-1].tolist(), ids[1:].tolist()))
    for (a, b), n in counter.items():
        assert c[a, b] == n
    assert c.sum() == len(ids) - 1


def test_unigram_probs_with_add_alpha_smoothing():
    lm = UnigramLM.from_ids([0, 0, 0, 1], vocab_size=3, alpha=1.0)
    # (3+1, 1+1, 0+1) / (4 + 3)
    assert torch.allclose(lm.probs, torch.tensor([4 / 7, 2 / 7, 1 / 7]))
    mle = UnigramLM.from_ids([0, 0, 0, 1], vocab_size=3, alpha=0.0)
    assert torch.allclose(mle.probs, torch.tensor([0.75, 0.25, 0.0]))


def test_unigram_loss_equals_pytorch_cross_entropy():
    ids = _random_ids(300, 6)
    lm = UnigramLM.from_ids(ids[:200], 6)
    test = ids[200:]
    expected = F.cross_entropy(lm.probs.log().expand(len(test), -1), test).item()
    assert lm.loss(test) == pytest.approx(expected, rel=1e-5)
    assert lm.log_likelihood(test) == pytest.approx(-expected * len(test), rel=1e-5)


def test_count_bigram_mle_is_counts_over_row_sums():
    ids = _random_ids(800, 5)
    lm = CountBigramLM.from_ids(ids, 5, alpha=0.0)
    c = count_bigrams(ids, 5)
    assert torch.allclose(lm.probs, c / c.sum(1, keepdim=True))
    assert torch.allclose(lm.probs.sum(1), torch.ones(5))


def test_count_bigram_smoothing_and_an_unseen_row():
    # token 2 never occurs before another token: with alpha=0 its row falls back to uniform
    lm = CountBigramLM.from_ids([0, 1, 0, 1, 2], 3, alpha=0.0)
    assert torch.allclose(lm.probs[2], torch.full((3,), 1 / 3))
    assert torch.allclose(lm.probs[0], torch.tensor([0.0, 1.0, 0.0]))
    smooth = CountBigramLM.from_ids([0, 1, 0, 1, 2], 3, alpha=0.5)
    # row 0: counts (0, 2, 0) + 0.5 -> (0.5, 2.5, 0.5) / 3.5
    assert torch.allclose(smooth.probs[0], torch.tensor([0.5, 2.5, 0.5]) / 3.5)


def test_count_bigram_loss_equals_pytorch_cross_entropy_and_log_likelihood_by_hand():
    ids = _random_ids(600, 6)
    lm = CountBigramLM.from_ids(ids[:400], 6, alpha=1.0)
    test = ids[400:]
    expected = F.cross_entropy(lm.logits[test[:-1]], test[1:]).item()
    assert lm.loss(test) == pytest.approx(expected, rel=1e-5)
    # a two-token text: log P(b | a)
    assert lm.log_likelihood([2, 3]) == pytest.approx(math.log(lm.probs[2, 3].item()), rel=1e-6)


# --------------------------------------------------------------------------- the loss from counts


def test_loss_from_counts_equals_the_model_face_on_every_pair():
    ids = _random_ids(1000, 6)
    torch.manual_seed(0)
    model = BigramLM(6)
    with torch.no_grad():
        model.logits_table.normal_()
    _, loss = model(ids[:-1], ids[1:])
    fast = loss_from_counts(model.logits_table, count_bigrams(ids, 6))
    assert fast.item() == pytest.approx(loss.item(), rel=1e-5)


def test_counted_mle_is_the_minimum_of_the_loss():
    ids = _random_ids(3000, 5, floor=0.05)
    c = count_bigrams(ids, 5)
    assert (c > 0).all(), "test needs every pair seen so the MLE logits are finite"
    table = CountBigramLM(c, alpha=0.0).logits.clone().requires_grad_(True)
    loss_from_counts(table, c).backward()
    assert table.grad.abs().max() < 1e-6   # zero gradient: a stationary point
    # and any nudge makes it worse (the loss is convex in the logits)
    nudged = table.detach() + 0.1 * torch.randn(5, 5, generator=torch.Generator().manual_seed(1))
    assert loss_from_counts(nudged, c) > loss_from_counts(table.detach(), c)


# --------------------------------------------------------------------------- the learned model


def test_bigram_starts_uniform_with_loss_log_v():
    model = BigramLM(11)
    x = torch.randint(0, 11, (4, 9))
    logits, loss = model(x, x.roll(1, dims=1))
    assert logits.shape == (4, 9, 11)
    assert loss.item() == pytest.approx(math.log(11), rel=1e-6)
    logits, loss = model(x)
    assert loss is None


def test_bigram_face_matches_cross_entropy_of_gathered_rows():
    torch.manual_seed(0)
    model = BigramLM(5)
    with torch.no_grad():
        model.logits_table.normal_()
    x, y = torch.randint(0, 5, (3, 4)), torch.randint(0, 5, (3, 4))
    logits, loss = model(x, y)
    assert torch.equal(logits[1, 2], model.logits_table[x[1, 2]])
    assert loss.item() == pytest.approx(F.cross_entropy(logits.view(-1, 5), y.view(-1)).item(), rel=1e-6)


def test_trained_bigram_converges_to_the_counted_model():
    ids = _random_ids(3000, 6)
    c = count_bigrams(ids, 6)
    counted = CountBigramLM(c, alpha=0.0)
    torch.manual_seed(0)
    model = BigramLM(6)
    train(model, lambda: c, 300, lr=0.2, lr_min=0.002, loss_fn=lambda m, counts: loss_from_counts(m.logits_table, counts),
          device="cpu", progress=False)
    assert loss_from_counts(model.logits_table.detach(), c).item() == pytest.approx(counted.loss(ids), abs=2e-3)
    assert torch.allclose(model.probs(), counted.probs, atol=0.02)


def test_generate_shapes_prompt_and_reproducibility():
    torch.manual_seed(0)
    model = BigramLM(8)
    prompt = torch.tensor([[1, 2], [3, 4]])
    a = model.generate(prompt, 10, generator=torch.Generator().manual_seed(5))
    b = model.generate(prompt, 10, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 12) and torch.equal(a, b) and torch.equal(a[:, :2], prompt)
    assert model.generate(torch.tensor([3]), 4).shape == (5,)


def test_generate_follows_a_deterministic_chain():
    # text 0 1 2 0 1 2 ...: with alpha=0 counting, each token has exactly one successor
    counted = CountBigramLM.from_ids([0, 1, 2] * 20, 3, alpha=0.0)
    model = BigramLM(3)
    with torch.no_grad():
        model.logits_table.copy_(counted.logits.clamp(min=-1e4))
    out = model.generate(torch.tensor([1]), 6, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [1, 2, 0, 1, 2, 0, 1]
    assert counted.sample([1], 6, generator=torch.Generator().manual_seed(0)).tolist() == [1, 2, 0, 1, 2, 0, 1]


# --------------------------------------------------------------------------- sampling and temperature


def test_unigram_samples_follow_the_probabilities():
    lm = UnigramLM(torch.tensor([6.0, 3.0, 1.0]), alpha=0.0)
    draws = lm.sample(20000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.015)


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0]).expand(20000, -1)
    g = torch.Generator().manual_seed(0)
    cold = torch.bincount(sample_from_logits(logits, 0.1, g), minlength=3).float() / 20000
    hot = torch.bincount(sample_from_logits(logits, 100.0, g), minlength=3).float() / 20000
    assert cold[0] > 0.99                                      # p ~ [1, 5e-5, 2e-9]
    assert torch.allclose(hot, torch.full((3,), 1 / 3), atol=0.02)
    # temperature T is the same as softmax(logits / T): check the T=2 frequencies
    warm = torch.bincount(sample_from_logits(logits, 2.0, g), minlength=3).float() / 20000
    assert torch.allclose(warm, torch.softmax(torch.tensor([1.0, 0.5, 0.0]), 0), atol=0.015)


def test_count_bigram_sample_is_reproducible():
    lm = CountBigramLM.from_ids(_random_ids(500, 6), 6)
    a = lm.sample([0], 30, temperature=0.7, generator=torch.Generator().manual_seed(3))
    b = lm.sample([0], 30, temperature=0.7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and len(a) == 31 and a[0] == 0


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    model = BigramLM(5)
    with pytest.raises(ValueError, match="non-empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="out of range"):
        model.generate(torch.tensor([[7]]), 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.generate(torch.tensor([[1]]), 3, temperature=0.0)
    with pytest.raises(ValueError, match="out of range"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape of idx"):
        model(torch.tensor([[0, 1]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="out of range"):
        CountBigramLM.from_ids([0, 1, 9], 5)
    with pytest.raises(ValueError, match="at least 2"):
        CountBigramLM.from_ids([1], 5)
    with pytest.raises(ValueError, match="at least 1"):
        UnigramLM.from_ids([], 5)
    with pytest.raises(ValueError, match="at least 1"):
        CountBigramLM.from_ids([0, 1, 2], 5).sample([], 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        UnigramLM.from_ids([0, 1], 5).sample(3, temperature=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        CountBigramLM.from_ids([0, 1, 2], 5, alpha=-1)
    with pytest.raises(ValueError, match="vocab_size"):
        BigramLM(0)


def test_ids_given_as_a_list_of_floats_are_refused_not_truncated():
    with pytest.raises(ValueError, match="integer token ids"):
        UnigramLM.from_ids([0.5, 1.9, 2.7], vocab_size=3)
    with pytest.raises(ValueError, match="integer token ids"):
        count_bigrams([0.2, 1.8], 2)
    with pytest.raises(ValueError, match="at least 1 token"):
        UnigramLM.from_ids([], vocab_size=3)
    assert UnigramLM.from_ids([0, 1, 1], vocab_size=3).counts.tolist() == [1.0, 2.0, 0.0]
