import pytest
import torch
import torch.nn.functional as F

from aigc_helpers import set_seed
from aigc_helpers.dalle import DalleConfig, DallePipeline, MiniDalle, dalle_loss_fn
from aigc_helpers.text2image import WordTokenizer
from aigc_helpers.vq import VQAutoencoder, VQConfig


@pytest.fixture
def tok():
    return WordTokenizer(["a", "dark", "light", "bag", "boot"], max_len=4)


def small(tok, taught=False, **kw):
    set_seed(0)
    cfg = dict(text_vocab=tok.vocab_size, text_len=tok.max_len, n_codes=6, image_tokens=4, n_layer=2, n_head=2,
               n_embd=16, p_uncond=0.0)
    cfg.update(kw)
    model = MiniDalle(DalleConfig(**cfg))
    if taught:                                  # a little training, so that the prompt and its absence both matter
        model.config.p_uncond = 0.3
        ids = tok.encode(["a dark bag", "boot"] * 4)
        codes = torch.tensor([[0, 1, 2, 3], [5, 4, 4, 1]] * 4)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(60):
            loss = model(ids, codes)[1]
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.config.p_uncond = 0.0
    return model.eval()


def test_forward_is_the_gpt_on_prompt_then_codes(tok):
    model = small(tok)
    ids = tok.encode(["a dark bag", "boot"])
    codes = torch.tensor([[0, 5, 2, 3], [1, 1, 4, 0]])
    logits, loss = model(ids, codes)
    assert logits.shape == (2, 4, 6)
    seq = torch.cat([ids, codes + tok.vocab_size], 1)
    assert torch.equal(model.sequence(ids, codes), seq)
    full = model.gpt(seq[:, :-1])[0]                                      # (2, 7, V)
    assert torch.allclose(logits, full[:, 3:, tok.vocab_size:], atol=1e-6)   # code i is predicted at position 3 + i
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 6), codes.flatten()), atol=1e-6)
    assert torch.allclose(dalle_loss_fn(model, (codes.view(2, 2, 2), ids)), loss)


def test_a_code_is_predicted_from_the_prompt_and_earlier_codes_only(tok):
    model = small(tok)
    ids = tok.encode(["a dark bag", "boot"])
    codes = torch.tensor([[0, 5, 2, 3], [1, 1, 4, 0]])
    base = model(ids, codes)[0]
    changed = codes.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 6
    out = model(ids, changed)[0]
    assert torch.allclose(out[:, :3], base[:, :3], atol=1e-6)            # codes 0..2 do not see code 2
    assert not torch.allclose(out[:, 3], base[:, 3], atol=1e-4)          # code 3 does
    other = model(tok.encode(["a light bag", "boot"]), codes)[0]
    assert not torch.allclose(other[0, 0], base[0, 0], atol=1e-4)        # the prompt reaches the first code


def test_caption_dropout_uses_the_empty_prompt(tok):
    model = small(tok, p_uncond=1.0)
    ids = tok.encode(["a dark bag", "boot"])
    codes = torch.tensor([[0, 5, 2, 3], [1, 1, 4, 0]])
    model.train()
    dropped = model(ids, codes)[1]
    model.eval()
    assert torch.allclose(dropped, model(tok.encode(["", ""]), codes)[1], atol=1e-6)
    assert not torch.allclose(dropped, model(ids, codes)[1], atol=1e-4)
    assert torch.equal(model.null_text, tok.encode([""])[0])


def test_generate_matches_a_loop_without_cache_and_mixes_the_logits(tok):
    model = small(tok, taught=True)
    ids = tok.encode(["a dark bag", "boot"])
    for s in (1.0, 2.5):
        codes = model.generate(ids, guidance_scale=s, temperature=0)     # greedy
        assert codes.shape == (2, 4) and codes.dtype == torch.long
        expect = torch.zeros(2, 0, dtype=torch.long)
        null = model.null_text.expand(2, -1)
        for _ in range(4):
            cond = model.gpt(model.sequence(ids, expect))[0][:, -1, tok.vocab_size:]
            uncond = model.gpt(model.sequence(null, expect))[0][:, -1, tok.vocab_size:]
            mixed = uncond + s * (cond - uncond)
            expect = torch.cat([expect, mixed.argmax(-1, keepdim=True)], 1)
        assert torch.equal(codes, expect)
    null = tok.encode(["", ""])
    unguided = model.generate(ids, guidance_scale=0.0, temperature=0)     # s = 0: the empty prompt's logits alone
    assert torch.equal(unguided, model.generate(null, guidance_scale=1.0, temperature=0))
    assert not torch.equal(unguided, model.generate(ids, guidance_scale=1.0, temperature=0))   # the test has power
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(ids, 3.0, generator=g1), model.generate(ids, 3.0, generator=g2))
    prefix = torch.tensor([[5, 5], [0, 1]])
    done = model.generate(ids, 3.0, prefix=prefix, generator=g1)
    assert torch.equal(done[:, :2], prefix) and done.shape == (2, 4)


def test_bad_inputs_raise(tok):
    model = small(tok)
    ids = tok.encode(["a bag"])
    with pytest.raises(ValueError, match="expected token ids"):
        model(ids[:, :3], torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="codes must be in 0..5"):
        model(ids, torch.full((1, 4), 6))
    with pytest.raises(ValueError, match="expected codes"):
        model(ids, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="guidance_scale"):
        model.generate(ids, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="prefix"):
        model.generate(ids, prefix=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must be in"):
        model.generate(torch.full((1, 4), 99))


def test_a_tiny_model_learns_prompt_to_image_tokens(tok):
    model = small(tok, n_layer=1, n_embd=32)
    ids = tok.encode(["a dark bag", "a light boot"])
    codes = torch.tensor([[0, 1, 2, 3], [5, 4, 4, 1]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(ids, codes)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert torch.equal(model.generate(ids, guidance_scale=1.0, temperature=0), codes)


def test_pipeline(tok):
    set_seed(1)
    vq = VQAutoencoder(VQConfig(image_size=8, channels=(8, 8), code_dim=4, n_codes=6, groups=4)).eval()
    model = small(tok, taught=True)
    pipe = DallePipeline(vq, model, tok)
    images, codes = pipe(["a bag", "boot"], num_images_per_prompt=3, return_codes=True,
                         generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 8, 8) and codes.shape == (6, 2, 2)
    greedy = pipe(["a dark bag", "boot"], num_images_per_prompt=3, temperature=0, return_codes=True)[1]
    assert all(torch.equal(greedy[i], greedy[i // 3 * 3]) for i in range(6))   # prompts in order, 3 images each
    assert not torch.equal(greedy[0], greedy[3])
    assert images.min() >= 0 and images.max() <= 1
    assert torch.allclose(images, vq.decode(codes), atol=1e-6)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe("a bag", num_images_per_prompt=0)
    with pytest.raises(ValueError, match="grid and codebook"):
        DallePipeline(VQAutoencoder(VQConfig(image_size=8, channels=(8,), code_dim=4, n_codes=6, groups=4)), model, tok)
    with pytest.raises(ValueError, match="tokenizer"):
        DallePipeline(vq, model, WordTokenizer(["a"], max_len=4))
    with pytest.raises(ValueError, match="unknown word"):
        pipe("a red bag")


def test_generate_refuses_prefix_codes_out_of_range():
    m = MiniDalle(DalleConfig(text_vocab=5, text_len=4, n_codes=16, image_tokens=9, n_layer=2, n_head=2, n_embd=32))
    ids = WordTokenizer(["a", "b", "c"], max_len=4).encode(["a b"])
    for bad in ([[-1, -5]], [[16]]):
        with pytest.raises(ValueError, match="prefix codes"):
            m.generate(ids, temperature=0, prefix=torch.tensor(bad))
