import math

import pytest
import torch

from aigc_helpers.decoding import (apply_temperature, beam_search, greedy, sample_next, sequence_logprob,
                                   top_k_filter, top_p_filter)

LOGITS = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))


def test_top_k_keeps_exactly_k():
    for k in (1, 2, 4, 5):
        kept = torch.isfinite(top_k_filter(LOGITS, k))
        assert kept.sum().item() == k and kept[0, :k].all()
    assert torch.isfinite(top_k_filter(LOGITS, 10)).all()


def test_top_p_keeps_smallest_set_reaching_p():
    cases = {0.5: 1, 0.51: 2, 0.7: 2, 0.71: 3, 0.85: 3, 0.9: 4, 1.0: 5, 1e-9: 1}
    for p, n in cases.items():
        kept = torch.isfinite(top_p_filter(LOGITS, p))
        assert kept.sum().item() == n, p
        assert kept[0, :n].all()
    shuffled = LOGITS[:, [3, 0, 4, 2, 1]]  # order in the vocabulary does not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.7)).tolist() == [[False, True, False, False, True]]


def test_temperature_and_greedy():
    assert torch.allclose(apply_temperature(LOGITS, 2.0), LOGITS / 2)
    assert greedy(LOGITS).item() == 0
    g = torch.Generator().manual_seed(0)
    assert all(sample_next(LOGITS, 0.0, generator=g).item() == 0 for _ in range(5))
    draws = torch.stack([sample_next(LOGITS, 1.0, generator=g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=5).float() / 4000
    assert torch.allclose(freq, LOGITS.softmax(-1)[0], atol=0.03)
    draws = torch.stack([sample_next(LOGITS, 1.0, top_k=2, generator=g) for _ in range(500)])
    assert set(draws.flatten().tolist()) <= {0, 1}


@pytest.mark.parametrize("T", [0.5, 2.0])
def test_sampling_frequencies_follow_softmax_of_logits_over_temperature(T):
    """sample_next at temperature T draws token i with probability softmax(logits / T)_i."""
    n = 20000                                                  # sd of each frequency <= 0.0036
    draws = sample_next(LOGITS.expand(n, -1), T, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).float() / n
    want = (LOGITS[0] / T).softmax(-1)                         # T=0.5: p^2 renormalised, T=2: sqrt(p)
    assert torch.allclose(freq, want, atol=0.015)
    assert (want - LOGITS.softmax(-1)[0]).abs().max() > 0.15   # far from the T=1 distribution


@pytest.mark.parametrize("kw", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_invalid_settings_raise(kw):
    with pytest.raises(ValueError):
        sample_next(LOGITS, **kw)


def test_beam_search_finds_the_best_sequence_greedy_misses():
    """A two-step distribution where the greedy first token leads to a flat second step."""
    def next_logits(ids):
        rows = []
        for seq in ids:
            if len(seq) == 1:
                rows.append(torch.tensor([0.0, 0.6, 0.4]))          # greedy picks 1
            elif seq[1] == 1:
                rows.append(torch.tensor([0.0, 0.5, 0.5]))          # then at best 0.5: 0.30
            else:
                rows.append(torch.tensor([0.0, 0.05, 0.95]))        # 0.4 * 0.95 = 0.38
        return torch.log(torch.stack(rows).clamp_min(1e-12))
    seq, score = beam_search(next_logits, torch.tensor([0]), 2, beam_width=2)
    assert seq.tolist() == [0, 2, 2] and score == pytest.approx(math.log(0.38), abs=1e-5)
    seq1, score1 = beam_search(next_logits, torch.tensor([0]), 2, beam_width=1)
    assert seq1[1].item() == 1 and score1 < score
    assert sequence_logprob(next_logits, torch.tensor([0]), torch.tensor([2, 2])) == pytest.approx(score, abs=1e-5)
    with pytest.raises(ValueError):
        beam_search(next_logits, torch.tensor([], dtype=torch.long), 2)


def test_distinct_n_counts_unique_ngrams():
    from aigc_helpers.decoding import distinct_n
    words = "the cat saw the cat".split()
    assert distinct_n([words], 1) == pytest.approx(3 / 5)          # the, cat, saw
    assert distinct_n([words], 2) == pytest.approx(3 / 4)          # (the cat) repeats
    assert distinct_n([["a", "b"], ["b", "a"]], 2) == 1.0           # no n-gram across sequences
    assert distinct_n(["abab"], 2) == pytest.approx(2 / 3)          # a string is its characters
    ids = torch.tensor([[1, 2, 1, 2], [1, 2, 3, 4]])
    assert distinct_n(ids, 2) == pytest.approx(4 / 6)               # rows of a tensor, by value
    assert distinct_n([[7] * 10], 1) == pytest.approx(0.1)          # a loop scores near 0
    with pytest.raises(ValueError, match="no 3-grams"):
        distinct_n([["a", "b"]], 3)
    with pytest.raises(ValueError, match="positive integer"):
        distinct_n([words], 0)
