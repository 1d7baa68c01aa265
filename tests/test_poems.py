import random

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.data import CharTokenizer
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.ngram import BigramLM, CountBigramLM
from aigc_helpers.poems import (BOS, EOS, KeepBest, Poem, clause_lengths, corpus_loss, form_rate,
                                generate_poems, line_form, line_form_rate, longest_shared_substring,
                                parse_poems, poem_dataset, poem_form, split_poems)

NIGHT = "《夜思》\n李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"


def test_parse_poems():
    (p,) = parse_poems([NIGHT.replace("李白", " 李白\u3000") + "\n\n"])
    assert (p.title, p.author) == ("夜思", "李白")
    assert p.body == "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    assert p.text() == BOS + p.body + EOS
    with pytest.raises(ValueError, match="record 0"):
        parse_poems(["夜思\n李白\n床前明月光。"])
    with pytest.raises(ValueError, match="reserved"):
        parse_poems([NIGHT + "$"])


def test_split_poems_by_poem():
    poems = [Poem(str(i), "a", f"第{i}首。") for i in range(20)]
    tr, va = split_poems(poems, 0.2, seed=1)
    assert len(va) == 4 and len(tr) == 16
    assert sorted(p.title for p in tr + va) == sorted(p.title for p in poems)
    assert split_poems(poems, 0.2, seed=1) == (tr, va)
    assert split_poems(poems, 0.2, seed=2)[1] != va
    with pytest.raises(ValueError):
        split_poems(poems, 1.5)


def test_poem_dataset_round_trip():
    tr, va = [Poem("a", "x", "春眠不觉晓。")], [Poem("b", "y", "处处闻啼鸟。")]
    data = poem_dataset(tr, va)
    assert data.tokenizer.decode(data.train) == "^春眠不觉晓。$"
    assert data.tokenizer.decode(data.val) == "^处处闻啼鸟。$"
    assert data.tokenizer.vocab_size == len(set("^$春眠不觉晓。处闻啼鸟"))


def test_corpus_loss_single_window_matches_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.randint(0, 7, (11,))
    expected = model(ids[None, :-1], ids[None, 1:])[1].item()
    assert corpus_loss(model, ids, block_size=16) == pytest.approx(expected, abs=1e-5)
    assert corpus_loss(model, ids, block_size=10) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("block_size,batch_size", [(1, 64), (3, 2), (4, 64), (50, 1)])
def test_corpus_loss_windows_cover_every_pair_once(block_size, batch_size):
    # a bigram model's loss does not depend on the windowing: every pair must be scored exactly once
    torch.manual_seed(0)
    model = BigramLM(5)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    ids = torch.randint(0, 5, (23,))
    logits = model(ids[None, :-1])[0][0]                                   # (22, 5)
    expected = F.cross_entropy(logits, ids[1:]).item()
    assert corpus_loss(model, ids, block_size, batch_size) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError):
        corpus_loss(model, ids[:1], block_size)


def test_keep_best_restores_the_best_weights():
    tr, va = [Poem("a", "x", "春眠不觉晓，处处闻啼鸟。")], [Poem("b", "y", "春眠不觉鸟。")]
    data = poem_dataset(tr, va)
    torch.manual_seed(0)
    model = BigramLM(data.tokenizer.vocab_size)
    kb = KeepBest(data, block_size=4)
    with pytest.raises(ValueError):
        kb.restore(model)
    first = kb(model)["val_loss"]
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0).add_(torch.randn_like(p) * 20)                    # much worse
    second = kb(model)
    assert second["val_loss"] > first and kb.best_call == 0 and kb.best_loss == first
    kb.restore(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in good.items())
    assert corpus_loss(model, data.val, 4) == pytest.approx(first)


def _chain_bigram(tok: CharTokenizer, chain: str) -> CountBigramLM:
    counts = torch.zeros(tok.vocab_size, tok.vocab_size)
    for a, b in zip(chain, chain[1:]):
        counts[tok.stoi[a], tok.stoi[b]] += 1
    return CountBigramLM(counts, alpha=0.0)


def test_generate_poems_cuts_at_the_end_mark():
    tok = CharTokenizer("^$月光，。\n")
    model = _chain_bigram(tok, "^月光，光。$")   # deterministic except after 光 (， or 。)
    out = generate_poems(model, tok, ["月"], max_new_tokens=30, seed=0)
    assert out[0].startswith("月光") and out[0].endswith("。") and EOS not in out[0]
    assert generate_poems(model, tok, ["月"], max_new_tokens=1, seed=0) == [None]
    with pytest.raises(ValueError):
        generate_poems(model, tok, [], 5)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        generate_poems(model, tok, ["星"], 5)


def test_generate_poems_with_a_gpt_keeps_prompts_in_order():
    tok = CharTokenizer("^$月光，。\n")
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    prompts = ["月光，光。\n", "光，", "月光。\n月光。\n"]
    out = generate_poems(gpt, tok, prompts, 6, seed=0, finished_only=False)
    assert len(out) == 3
    for o, p in zip(out, prompts):
        # the complete lines so far: the prompt's finished lines come first, a body never holds "^"/"$"
        assert o.startswith(p[:p.rfind("\n")] if "\n" in p else "") and EOS not in o
    assert generate_poems(gpt, tok, prompts, 6, seed=0, finished_only=False) == out   # seeded


def test_form_checks_by_hand():
    assert line_form("床前明月光，疑是地上霜。") == 5
    assert line_form("黄河远上白云间，一片孤城万仞山。") == 7
    assert line_form("床前明月光，疑是霜。") is None
    assert line_form("床前明月光。") is None
    assert line_form("床前明月光，疑是地上霜") is None
    night = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    assert poem_form(night) == 5
    assert poem_form(night.replace("低头思故乡", "低头思念故乡")) is None      # a 6-character clause
    assert poem_form("床前明月光，疑是地上霜。") is None                       # too short: two clauses
    assert poem_form("长相思，在长安。\n长相思，摧心肝。") is None               # clauses of 3
    assert poem_form(None) is None
    assert poem_form("床前明月光，疑是地上霜，举头望明月。\n低头思故乡，低头思故乡。") is None   # 3 clauses in a line
    assert form_rate([night, None, "乱写", night]) == 0.5
    assert line_form_rate([night, "床前明月光。\n乱", None]) == pytest.approx(2 / 4)
    assert clause_lengths([night, "一二三，尾巴"]) == {5: 4, 3: 1}
    with pytest.raises(ValueError):
        form_rate([])


def test_longest_shared_substring():
    assert longest_shared_substring("举头望明月", "床前明月光") == "明月"
    assert longest_shared_substring("床前明月光", "床前明月光") == "床前明月光"
    assert longest_shared_substring("天地", "床前明月光") == ""
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 12)))
        corpus = "".join(rng.choice("abc") for _ in range(rng.randint(0, 20)))
        brute = max((j - i for i in range(len(text)) for j in range(i, len(text) + 1)
                     if text[i:j] in corpus), default=0)
        found = longest_shared_substring(text, corpus)
        assert len(found) == brute and found in corpus and found in text


def test_split_poems_keeps_at_least_one_poem_on_each_side():
    assert [len(s) for s in split_poems(list("ab"), 0.9)] == [1, 1]
    assert [len(s) for s in split_poems(list(range(10)), 0.96)] == [1, 9]
