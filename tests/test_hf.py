import pytest
import torch

from aigc_helpers import hf, set_seed
from aigc_helpers.data import CharTokenizer, load_shakespeare
from aigc_helpers.gpt import GPT, GPTConfig

import transformers
from transformers import GPT2LMHeadModel

transformers.logging.set_verbosity_error()


def tiny_gpt(bias=True, n_head=2, seed=0, dtype=torch.float32):
    """A small GPT whose every parameter (LayerNorm scales and zero-initialised biases too) is random."""
    set_seed(seed)
    m = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=n_head, n_embd=16, bias=bias))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m.to(dtype).eval()


def random_ids(shape, vocab=13, seed=1):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_head", [1, 2, 4])
def test_book_to_hf_same_logits_and_loss(bias, n_head):
    m = tiny_gpt(bias, n_head)
    h = hf.gpt_to_hf(m)
    assert isinstance(h, GPT2LMHeadModel) and not h.training
    idx = random_ids((3, 16))
    with torch.no_grad():
        ours, theirs = m(idx)[0], h(idx).logits                       # (3, 16, 13)
        assert ours.abs().max() > 0.1                                 # not a degenerate model
        assert torch.allclose(ours, theirs, atol=1e-5)
        book_loss = m(idx[:, :-1], idx[:, 1:])[1]                     # HF shifts the labels itself
        assert h(idx, labels=idx).loss.item() == pytest.approx(book_loss.item(), abs=1e-6)


def test_conv1d_weights_are_transposed_and_head_is_tied():
    m = tiny_gpt()
    h = hf.gpt_to_hf(m)
    assert torch.equal(h.transformer.h[0].attn.c_attn.weight, m.blocks[0].attn.c_attn.weight.t())   # (C, 3C)
    assert torch.equal(h.transformer.h[1].mlp.c_fc.weight, m.blocks[1].mlp.c_fc.weight.t())         # (C, 4C)
    assert h.lm_head.weight is h.transformer.wte.weight
    with torch.no_grad():                                             # a copy: the book's model is untouched
        h.transformer.wte.weight.zero_()
    assert m.wte.weight.abs().sum() > 0


@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_book_hf_book_is_exact(bias):
    m = tiny_gpt(bias, n_head=4)
    back = hf.hf_to_gpt(hf.gpt_to_hf(m), bias=bias)
    assert back.config == m.config
    a, b = m.state_dict(), back.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert back.lm_head.weight is back.wte.weight


def test_hf_model_to_book_computes_the_same():
    set_seed(3)
    h = GPT2LMHeadModel(hf.to_hf_config(GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=8))).eval()
    with torch.no_grad():
        for p in h.parameters():
            p.add_(0.2 * torch.randn_like(p))                         # non-zero biases, non-unit LayerNorms
    m = hf.hf_to_gpt(h)
    assert (m.config.n_layer, m.config.n_head, m.config.block_size) == (3, 2, 12)
    idx = random_ids((2, 12), vocab=11)
    with torch.no_grad():
        assert torch.allclose(m(idx)[0], h(idx).logits, atol=1e-5)
    back = hf.gpt_to_hf(m)                                            # and back again, exactly
    assert all(torch.equal(x, y) for x, y in zip(h.state_dict().values(), back.state_dict().values()))


def test_dtype_and_mode_are_kept():
    m = tiny_gpt(dtype=torch.float64).train()
    h = hf.gpt_to_hf(m)
    assert h.dtype == torch.float64 and h.training
    back = hf.hf_to_gpt(h.eval())
    assert next(back.parameters()).dtype == torch.float64 and not back.training


def test_greedy_generation_matches_token_for_token():
    m = tiny_gpt(n_head=4)
    h = hf.gpt_to_hf(m)
    prompt = random_ids((2, 4))
    ours = m.generate(prompt, 10, temperature=0)
    theirs = h.generate(prompt, max_new_tokens=10, do_sample=False)
    assert torch.equal(ours, theirs)


def test_unsupported_configs_raise_clear_errors():
    h = hf.gpt_to_hf(tiny_gpt())
    config = h.config
    for field, value, words in [("activation_function", "gelu_new", "exact GELU"), ("n_inner", 24, "MLP"),
                                ("layer_norm_epsilon", 1e-6, "epsilon"), ("tie_word_embeddings", False, "tie"),
                                ("scale_attn_by_inverse_layer_idx", True, "scaled"),
                                ("add_cross_attention", True, "encoder")]:
        bad = config.__class__.from_dict({**config.to_dict(), field: value})
        with pytest.raises(ValueError, match=words):
            hf.from_hf_config(bad)
    with pytest.raises(ValueError, match="bias=False"):                # non-zero biases cannot be dropped
        hf.hf_to_gpt(h, bias=False)
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        hf.hf_to_gpt(tiny_gpt())
    with pytest.raises(ValueError, match="book's GPT"):
        hf.gpt_to_hf(h)
    with torch.no_grad():                                             # an untied head is refused too
        h.lm_head.weight = torch.nn.Parameter(h.lm_head.weight.detach() + 1)
    with pytest.raises(ValueError, match="lm_head"):
        hf.hf_to_gpt(h)


def test_char_tokenizer_fast_encodes_like_the_book():
    text = "To be, or not to be:\n\tthat is the question.  "
    book = CharTokenizer.from_text(text)
    fast = hf.char_tokenizer_fast(book, model_max_length=64)
    sample = "be or not\n\n to be:\t that.  "
    ids = fast(sample)["input_ids"]
    assert ids == book.encode(sample)
    assert fast.decode(ids) == sample
    assert len(fast) == book.vocab_size and fast.model_max_length == 64
    with pytest.raises(ValueError):
        book.encode("xyz")
    with pytest.raises(Exception):                                    # 'x' is not in the vocabulary
        fast("xyz")
    with pytest.raises(ValueError, match="CharTokenizer"):
        hf.char_tokenizer_fast({"a": 0})


def test_pipeline_runs_on_local_objects():
    text = "abcdefghij klmno\n"
    book = CharTokenizer.from_text(text)
    set_seed(0)
    m = GPT(GPTConfig(vocab_size=book.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    pipe = transformers.pipeline("text-generation", model=hf.gpt_to_hf(m), tokenizer=hf.char_tokenizer_fast(book))
    out = pipe("abc", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    expected = book.decode(m.generate(torch.tensor([book.encode("abc")]), 8, temperature=0)[0].tolist())
    assert out == expected and len(out) == 11


def test_save_and_load_pretrained(tmp_path):
    m = tiny_gpt(n_head=4)
    h = hf.gpt_to_hf(m)
    h.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    idx = random_ids((2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx).logits, h(idx).logits)
    back = hf.hf_to_gpt(loaded)
    assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), back.state_dict().values()))


def test_bpe_round_trip_and_truncation():
    text = load_shakespeare(max_chars=30_000)
    big = hf.train_bpe([text], 300)
    assert len(big) == 300
    sample = "the hat sat on the cat! ünïcode too\n"
    assert big.decode(big(sample)["input_ids"]) == sample            # bytes first: nothing is unknown
    small, cut = hf.train_bpe([text], 270), hf.truncate_bpe(big, 270)
    assert len(cut) == 270
    assert cut(text)["input_ids"] == small(text)["input_ids"]          # a prefix of the merges = a smaller training
    assert len(big(text)["input_ids"]) < len(cut(text)["input_ids"]) < len(text)
    with pytest.raises(ValueError):
        hf.truncate_bpe(big, 256)
    with pytest.raises(ValueError):
        hf.train_bpe([text], 100)
