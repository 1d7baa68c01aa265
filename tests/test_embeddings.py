"""Unit tests of aigc_helpers.embeddings (skip-gram with negative sampling)."""

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.embeddings import (
    SkipGramConfig,
    SkipGramNS,
    WordVocab,
    analogy,
    nearest,
    pair_batches,
    sample_negatives,
    skipgram_pairs,
    subsample,
)

# --------------------------------------------------------------------------- vocabulary


def test_vocab_orders_by_count_then_alphabet_and_respects_limits():
    tokens = "b a c a b a d d".split()              # a:3, b:2, d:2, c:1
    vocab = WordVocab.build(tokens, min_count=1)
    assert vocab.words == ["a", "b", "d", "c"]      # ties (b, d) broken alphabetically
    assert vocab.counts.tolist() == [3, 2, 2, 1]
    assert WordVocab.build(tokens, min_count=2).words == ["a", "b", "d"]
    assert WordVocab.build(tokens, min_count=1, max_size=2).words == ["a", "b"]
    assert len(vocab) == 4 and "d" in vocab and "z" not in vocab


def test_encode_decode_round_trip_and_unknown_words():
    vocab = WordVocab.build("to be or not to be".split(), min_count=1)
    ids = vocab.encode(["not", "to", "be"])
    assert vocab.decode(ids) == ["not", "to", "be"]
    assert vocab.decode(torch.tensor(ids)) == ["not", "to", "be"]
    assert vocab.encode(["to", "sleep", "be"], unknown="drop") == [vocab.index("to"), vocab.index("be")]
    with pytest.raises(ValueError, match="not in the vocabulary.*sleep.*unknown='drop'"):
        vocab.encode(["to", "sleep"])
    with pytest.raises(ValueError, match="'perchance' is not in the vocabulary"):
        vocab.index("perchance")
    with pytest.raises(ValueError, match="unknown must be"):
        vocab.encode(["to"], unknown="skip")
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([0, 99])


def test_vocab_bad_input():
    with pytest.raises(ValueError, match="empty"):
        WordVocab.build([])
    with pytest.raises(ValueError, match="lower min_count"):
        WordVocab.build("a b c".split(), min_count=2)
    with pytest.raises(ValueError, match="min_count"):
        WordVocab.build("a b".split(), min_count=0)
    with pytest.raises(ValueError, match="distinct"):
        WordVocab(["a", "a"], [1, 2])
    with pytest.raises(ValueError, match="counts"):
        WordVocab(["a", "b"], [1])


def test_noise_distribution_is_count_to_the_three_quarters():
    vocab = WordVocab(["the", "ghost", "bodkin"], [16, 1, 1])
    assert torch.allclose(vocab.noise_distribution(), torch.tensor([0.8, 0.1, 0.1]))   # 16^0.75 = 8
    assert torch.allclose(vocab.noise_distribution(1.0), torch.tensor([16, 1, 1]) / 18.0)
    assert torch.allclose(vocab.noise_distribution(0.0), torch.full((3,), 1 / 3))
    assert vocab.noise_distribution().dtype == torch.float32
    with pytest.raises(ValueError, match="power"):
        vocab.noise_distribution(-1.0)


def test_keep_probs_match_the_subsampling_formula():
    vocab = WordVocab(["the", "king", "sword"], [900, 90, 10])   # shares 0.9, 0.09, 0.01
    keep = vocab.keep_probs(t=0.01)
    expected = torch.tensor([math.sqrt(0.01 / 0.9), math.sqrt(0.01 / 0.09), 1.0])
    assert torch.allclose(keep, expected)
    with pytest.raises(ValueError, match="t must be positive"):
        vocab.keep_probs(t=0)


# --------------------------------------------------------------------------- pairs and batches


def test_skipgram_pairs_small_example():
    pairs = skipgram_pairs([10, 11, 12], window=1)
    assert sorted(map(tuple, pairs.tolist())) == [(10, 11), (11, 10), (11, 12), (12, 11)]
    pairs = skipgram_pairs(torch.arange(4), window=2)
    expected = {(c, o) for c in range(4) for o in range(4) if 1 <= abs(c - o) <= 2}
    assert set(map(tuple, pairs.tolist())) == expected and len(pairs) == len(expected)


@pytest.mark.parametrize("n, window", [(10, 1), (10, 3), (5, 9)])
def test_skipgram_pairs_count(n, window):
    pairs = skipgram_pairs(torch.arange(n), window)
    assert pairs.shape == (2 * sum(n - o for o in range(1, min(window, n - 1) + 1)), 2)
    assert ((pairs[:, 0] - pairs[:, 1]).abs() <= window).all()


def test_skipgram_pairs_bad_input():
    with pytest.raises(ValueError, match="window must be a positive int"):
        skipgram_pairs([1, 2, 3], window=0)
    with pytest.raises(ValueError, match="at least 2 ids"):
        skipgram_pairs([1], window=2)
    with pytest.raises(ValueError, match="1-D"):
        skipgram_pairs(torch.zeros(2, 3, dtype=torch.long), window=1)
    with pytest.raises(ValueError, match="non-negative"):
        skipgram_pairs([1, -1, 2], window=1)


def test_subsample_keeps_with_the_given_probabilities():
    ids = torch.tensor([0, 1] * 5000)
    g = torch.Generator().manual_seed(0)
    kept = subsample(ids, torch.tensor([1.0, 0.25]), generator=g)
    assert (kept == 0).sum() == 5000                        # always kept
    assert abs((kept == 1).sum().item() / 5000 - 0.25) < 0.03  # about a quarter kept
    assert len(subsample(ids, torch.zeros(2))) == 0
    with pytest.raises(ValueError, match="keep has only 1"):
        subsample(ids, torch.ones(1))


def test_sample_negatives_follow_the_noise_distribution():
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(torch.tensor([0.0, 0.0, 1.0]), (4, 3), g)
    assert neg.shape == (4, 3) and (neg == 2).all()
    draws = sample_negatives(torch.tensor([0.7, 0.2, 0.1]), (20000,), g)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)
    with pytest.raises(ValueError, match="noise"):
        sample_negatives(torch.ones(2, 2), (3,))


def test_pair_batches_shapes_and_contents():
    pairs = skipgram_pairs(torch.arange(20), window=2)
    noise = torch.full((20,), 1 / 20)
    center, context, neg = pair_batches(pairs, 64, noise, 3, torch.Generator().manual_seed(0))()
    assert center.shape == (64,) and context.shape == (64,) and neg.shape == (64, 3)
    assert ((center - context).abs() <= 2).all() and (center != context).all()  # real pairs
    with pytest.raises(ValueError, match="shape \\(P, 2\\)"):
        pair_batches(torch.zeros(5, 3, dtype=torch.long), 4, noise, 3)
    with pytest.raises(ValueError, match="positive"):
        pair_batches(pairs, 0, noise, 3)


# --------------------------------------------------------------------------- the model


def _hand_model():
    """The chapter's example: v_c = (1, 2), u_o = (1, 1), negatives (1, -1) and (0, 1)."""
    model = SkipGramNS(SkipGramConfig(vocab_size=4, dim=2, negatives=2))
    with torch.no_grad():
        model.center_emb.weight[0] = torch.tensor([1.0, 2.0])
        model.context_emb.weight[1] = torch.tensor([1.0, 1.0])
        model.context_emb.weight[2] = torch.tensor([1.0, -1.0])
        model.context_emb.weight[3] = torch.tensor([0.0, 1.0])
    return model


def test_sgns_loss_by_hand():
    model = _hand_model()
    loss = model(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 3]]))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -(math.log(sig(3)) + math.log(sig(1)) + math.log(sig(-2)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(2.4888, abs=1e-4)
    assert model.score(torch.tensor([0, 0]), torch.tensor([1, 3])).tolist() == [3.0, 2.0]


def test_sgns_loss_matches_binary_cross_entropy_builtin():
    torch.manual_seed(0)
    model = SkipGramNS(SkipGramConfig(vocab_size=50, dim=8, init_std=0.5))
    center, context = torch.randint(50, (16,)), torch.randint(50, (16,))
    negatives = torch.randint(50, (16, 4))
    logits = torch.cat([model.score(center, context)[:, None],
                        model.score(center, negatives)], dim=1)          # (B, 1 + K)
    targets = torch.zeros_like(logits)
    targets[:, 0] = 1.0
    builtin = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 16
    assert torch.allclose(model(center, context, negatives), builtin, atol=1e-6)


def test_score_window_shape_matches_pairwise_scores():
    torch.manual_seed(0)
    model = SkipGramNS(SkipGramConfig(vocab_size=30, dim=4))
    center, ctx = torch.randint(30, (5,)), torch.randint(30, (5, 3))
    window = model.score(center, ctx)
    assert window.shape == (5, 3)
    assert torch.allclose(window[:, 1], model.score(center, ctx[:, 1]))


def test_model_bad_input():
    model = SkipGramNS(SkipGramConfig(vocab_size=10, dim=4))
    c = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        model(c, torch.tensor([3, 10]), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="negatives must have shape"):
        model(c, c, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="same length"):
        model(c, torch.tensor([1]), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="long tensor"):
        model(c.float(), c, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected center"):
        model.score(c, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="positive"):
        SkipGramNS(SkipGramConfig(vocab_size=0))


@pytest.fixture
def one_thread():
    """Tiny tensors: a second CPU thread only adds synchronisation (and stalls on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_separates_two_topics(one_thread):
    """Words of two disjoint 'topics' that never share a context end up nearer their own topic."""
    g = torch.Generator().manual_seed(0)
    topic_a, topic_b = torch.arange(0, 10), torch.arange(10, 20)
    sentences = [topic[torch.randint(10, (8,), generator=g)] for topic in [topic_a, topic_b] * 150]
    pairs = torch.cat([skipgram_pairs(s, window=2) for s in sentences])
    torch.manual_seed(0)
    model = SkipGramNS(SkipGramConfig(vocab_size=20, dim=8, negatives=5))
    batches = pair_batches(pairs, 256, torch.full((20,), 1 / 20), 5, g)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = model(*batches())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5
    for word in [0, 5, 12, 19]:
        ids, sims = nearest(model.word_vectors, word, k=5)
        same_topic = (ids < 10) == (word < 10)
        assert same_topic.all(), (word, ids)


# --------------------------------------------------------------------------- queries


def test_nearest_by_cosine_excludes_the_query():
    vectors = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    ids, sims = nearest(vectors, 0, k=3)
    assert ids.tolist() == [1, 2, 3]                 # length does not matter, direction does
    assert sims[0].item() == pytest.approx(10 / math.sqrt(101))
    assert sims.tolist()[1:] == pytest.approx([0.0, -1.0])
    with pytest.raises(ValueError, match="query_id=4 is out of range"):
        nearest(vectors, 4)
    with pytest.raises(ValueError, match="k must be between 1 and 3"):
        nearest(vectors, 0, k=4)
    with pytest.raises(ValueError, match="shape \\(V, d\\)"):
        nearest(torch.ones(3), 0)


def test_analogy_finds_the_parallel_word():
    # man -> woman is the same offset as king -> queen
    man, woman, king, queen, apple = range(5)
    vectors = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                            [0.0, 1.0, 1.0], [-1.0, 0.2, -1.0]])
    ids, sims = analogy(vectors, man, woman, king, k=2)
    assert ids[0].item() == queen and ids[1].item() == apple
    assert sims[0].item() > 0.9
    with pytest.raises(ValueError, match="c=7 is out of range"):
        analogy(vectors, 0, 1, 7)
