import math
from itertools import combinations

import pytest
import torch

from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.responsible import (WatermarkProcessor, association_test, continuation_logprob,
                                      cooccurrence_lean, green_count, green_lists, memorisation_rate,
                                      plant_canaries, sample_with_processor, sequence_logprob, substitute,
                                      watermark_z)


def tiny_gpt(vocab=12, block=16, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16)).eval()


# --------------------------------------------------------------------------- watermark


def test_green_lists_have_the_right_size_and_depend_on_the_key():
    g = green_lists(20, 0.25, key=1)
    assert g.shape == (20, 20) and g.dtype == torch.bool
    assert (g.sum(1) == 5).all()
    assert torch.equal(g, green_lists(20, 0.25, key=1))
    assert not torch.equal(g, green_lists(20, 0.25, key=2))
    assert not (g == g[0]).all()                       # rows differ: the previous token matters


def test_green_lists_reject_bad_arguments():
    with pytest.raises(ValueError):
        green_lists(10, 1.0)
    with pytest.raises(ValueError):
        green_lists(1, 0.5)


def test_processor_adds_delta_to_green_logits_only():
    p = WatermarkProcessor(10, 0.5, delta=3.0, key=0)
    logits = torch.randn(3, 10)
    prev = torch.tensor([0, 4, 9])
    diff = p(prev, logits) - logits
    for b in range(3):
        assert torch.allclose(diff[b], 3.0 * p.green[prev[b]].float())


def test_processor_with_one_delta_per_row():
    p = WatermarkProcessor(10, 0.5, delta=torch.tensor([0.0, 5.0]), key=0)
    logits = torch.zeros(2, 10)
    out = p(torch.tensor([1, 1]), logits)
    assert torch.equal(out[0], logits[0])
    assert torch.allclose(out[1], 5.0 * p.green[1].float())


def test_z_score_known_answer():
    g = green_lists(8, 0.5, key=3)
    seq = [0]
    for i in range(100):                       # 70 green steps then 30 red ones
        row = g[seq[-1]] if i < 70 else ~g[seq[-1]]
        seq.append(int(row.nonzero()[0]))
    ids = torch.tensor(seq)
    count, n = green_count(ids, g)
    assert count.item() == 70 and n.item() == 100
    assert watermark_z(ids, g, 0.5).item() == pytest.approx(4.0)


def test_unique_scoring_counts_each_pair_once():
    g = green_lists(8, 0.5, key=0)
    a = int(g[0].nonzero()[0])
    ids = torch.tensor([[0, a, 0, a, 0, a]])   # pairs (0,a),(a,0) repeated
    count, n = green_count(ids, g, unique=True)
    assert n.item() == 2
    assert count.item() == int(g[0, a]) + int(g[a, 0])


def test_z_is_standard_normal_for_uniform_random_text():
    """H0: tokens drawn without the key are green with probability gamma."""
    g = green_lists(50, 0.25, key=7)                   # 12 of 50 green: the fraction is 0.24
    ids = torch.randint(0, 50, (4000, 200), generator=torch.Generator().manual_seed(0))
    z = watermark_z(ids, g)
    with pytest.raises(ValueError):
        watermark_z(ids, g, 0.25)
    assert abs(z.mean().item()) < 0.06 and abs(z.std().item() - 1) < 0.05
    fpr = (z > 1.645).float().mean().item()
    assert abs(fpr - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 4000) + 0.01    # discreteness of the binomial


def test_watermarked_sampling_is_detected_and_plain_sampling_is_not():
    model = tiny_gpt(vocab=16, block=32)
    prompt = torch.zeros(8, 1, dtype=torch.long)
    proc = WatermarkProcessor(16, 0.5, delta=4.0, key=1)
    wm, lp_wm = sample_with_processor(model, prompt, 60, proc, generator=torch.Generator().manual_seed(0))
    plain, lp_plain = sample_with_processor(model, prompt, 60, None, generator=torch.Generator().manual_seed(0))
    assert wm.shape == (8, 61) and lp_wm.shape == (8, 60)
    z_wm, z_plain = watermark_z(wm, proc.green, 0.5), watermark_z(plain, proc.green, 0.5)
    assert (z_wm > 4).all() and (z_plain < 4).all()
    assert lp_wm.mean() < lp_plain.mean()            # the plain model likes watermarked text less


def test_sample_logp_is_the_plain_models_logprob():
    model = tiny_gpt(vocab=12, block=16)
    proc = WatermarkProcessor(12, 0.5, delta=2.0, key=0)
    ids, lp = sample_with_processor(model, torch.tensor([[1, 2]]), 5, proc, generator=torch.Generator().manual_seed(0))
    by_hand = model(ids[:, :-1])[0].log_softmax(-1)[0, 1:].gather(1, ids[0, 2:, None]).squeeze(1)
    assert torch.allclose(lp[0], by_hand, atol=1e-5)


def test_substitute_changes_exactly_the_requested_fraction():
    ids = torch.randint(0, 10, (5, 40), generator=torch.Generator().manual_seed(0))
    out = substitute(ids, 0.25, 10, torch.Generator().manual_seed(1))
    assert ((out != ids).sum(1) == 10).all()
    assert out.min() >= 0 and out.max() < 10
    assert torch.equal(substitute(ids, 0.0, 10), ids)


# --------------------------------------------------------------------------- memorisation


class Copier(torch.nn.Module):
    """A fake language model that always predicts ``table[previous token]``."""

    def __init__(self, table, vocab):
        super().__init__()
        self.table, self.vocab = torch.tensor(table), vocab
        self.config = GPTConfig(vocab_size=vocab, block_size=64)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.nn.functional.one_hot(self.table[idx], self.vocab).float() * 10, None

    def generate(self, idx, max_new_tokens, temperature=1.0):
        assert temperature == 0
        for _ in range(max_new_tokens):
            idx = torch.cat([idx, self(idx)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx


def test_memorisation_rate_known_answer():
    corpus = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 3, 3, 3])
    model = Copier([1, 2, 3, 0], 4)                  # continues 0 1 2 3 0 ... perfectly
    hit = memorisation_rate(model, corpus, torch.tensor([0, 1, 6, 8]), prefix_len=2, k=2)
    # start 0: prefix 0 1 -> 2 3 (true 2 3) yes; 1: 1 2 -> 3 0 (true 3 0) yes;
    # 6: 2 3 -> 0 1 (true 0 3) no; 8: 0 3 -> 0 1 (true 3 3) no
    assert hit.tolist() == [True, True, False, False]


def test_memorisation_rate_rejects_windows_past_the_end():
    with pytest.raises(ValueError):
        memorisation_rate(Copier([0], 1), torch.zeros(10, dtype=torch.long), torch.tensor([5]), 3, 3)


def test_plant_canaries_counts():
    text = "\n".join(f"line {i}" for i in range(50))
    out = plant_canaries(text, ["SECRET A", "SECRET B"], [3, 1], seed=0)
    assert out.count("SECRET A") == 3 and out.count("SECRET B") == 1
    assert out.replace("SECRET A\n", "").replace("SECRET B\n", "").replace("\nSECRET A", "").replace("\nSECRET B", "") == text


# --------------------------------------------------------------------------- scoring and association


def test_sequence_logprob_matches_chain_rule():
    model = tiny_gpt()
    ids = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    lp = sequence_logprob(model, ids, start=2)
    logits = model(ids[:, :-1])[0].log_softmax(-1)
    by_hand = logits[:, 1, :].gather(1, ids[:, 2:3]).squeeze(1) + logits[:, 2, :].gather(1, ids[:, 3:4]).squeeze(1) \
        + logits[:, 3, :].gather(1, ids[:, 4:5]).squeeze(1)
    assert torch.allclose(lp, by_hand, atol=1e-5)
    assert torch.allclose(continuation_logprob(model, [[1, 2], [5, 4]], [3, 4, 5])[0], lp[0], atol=1e-5)


def test_cooccurrence_lean_known_answer():
    toks = "he king he x she queen she she x king y".split()
    lean = cooccurrence_lean(toks, ["king", "queen"], ["he"], ["she"], window=1)
    # king: neighbours (he, he) and (x, y) -> 2 male, 0 female; queen: (she, she) -> 0 male, 2 female
    assert lean.tolist() == pytest.approx([math.log(3 / 1), math.log(1 / 3)])


def test_association_test_exact_p_known_answer():
    d, p = association_test([3.0, 4.0], [1.0, 2.0], n_perm=None)
    # 6 splits; mean difference >= 2 only for the observed one
    assert p == pytest.approx(1 / 6)
    assert d == pytest.approx(2 / torch.tensor([3.0, 4.0, 1.0, 2.0]).std().item())


def test_association_test_exact_matches_brute_force():
    x, y = [0.3, 1.2, -0.5, 2.0], [0.1, -1.0, 0.4]
    pooled = x + y
    obs = sum(x) / 4 - sum(y) / 3
    splits = list(combinations(range(7), 4))
    brute = sum(1 for s in splits if sum(pooled[i] for i in s) / 4
                - sum(pooled[i] for i in range(7) if i not in s) / 3 >= obs - 1e-12) / len(splits)
    assert association_test(x, y, n_perm=None)[1] == pytest.approx(brute)
    assert association_test(x, y, n_perm=20_000)[1] == pytest.approx(brute, abs=0.02)


def test_association_test_p_is_uniform_under_h0():
    g = torch.Generator().manual_seed(0)
    ps = torch.tensor([association_test(torch.randn(6, generator=g), torch.randn(6, generator=g), n_perm=None)[1]
                       for _ in range(300)])
    assert abs((ps < 0.05).float().mean().item() - 0.05) < 0.04
    assert abs(ps.mean().item() - 0.5) < 0.06


def test_hard_watermark_allows_green_tokens_only():
    wp = WatermarkProcessor(8, 0.5, delta=float("inf"))
    prev, logits = torch.tensor([0, 1]), torch.zeros(2, 8)
    probs = wp(prev, logits).softmax(-1)
    green = wp.green[prev]
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs[green], torch.full((int(green.sum()),), 0.25)) and (probs[~green] == 0).all()
    assert torch.equal(WatermarkProcessor(8, 0.5, delta=2.0)(prev, logits), 2.0 * green)   # finite: as before


def test_sequence_logprob_scores_without_dropout_and_keeps_the_mode():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.3))    # training mode
    ids = torch.randint(0, 10, (2, 6))
    a, b = sequence_logprob(m, ids, 2), sequence_logprob(m, ids, 2)
    assert torch.equal(a, b) and m.training
    m.eval()
    assert torch.allclose(a, sequence_logprob(m, ids, 2))
