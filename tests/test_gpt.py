import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.rnn import GRUConfig, GRULM, hidden_dim_for

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32)


def test_shapes_loss_and_tied_weights():
    set_seed(0)
    m = GPT(CFG)
    idx = torch.randint(0, 11, (3, 16))
    logits, loss = m(idx, torch.randint(0, 11, (3, 16)))
    assert logits.shape == (3, 16, 11)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(11.0)).item(), abs=0.1)  # ~uniform at init
    assert m.lm_head.weight is m.wte.weight
    assert m(idx)[1] is None


def test_causal_future_tokens_never_change_the_past():
    set_seed(0)
    m = GPT(CFG).eval()
    a = torch.randint(0, 11, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] + 1) % 11
    la, lb = m(a)[0], m(b)[0]
    assert torch.allclose(la[0, :8], lb[0, :8], atol=1e-6)
    assert not torch.allclose(la[0, 8:], lb[0, 8:])


def test_gpt_overfits_a_tiny_batch():
    set_seed(0)
    m = GPT(CFG)
    idx = torch.randint(0, 11, (4, 16))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = m(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_generate_length_cropping_and_errors():
    set_seed(0)
    m = GPT(CFG)
    out = m.generate(torch.zeros(2, 3, dtype=torch.long), 5)
    assert out.shape == (2, 8)
    long_prompt = torch.randint(0, 11, (1, 40))   # longer than block_size: cropped, no error
    assert m.generate(long_prompt, 4).shape == (1, 44)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(m.generate(long_prompt, 6, generator=g1), m.generate(long_prompt, 6, generator=g2))
    assert torch.equal(m.generate(long_prompt, 6, temperature=0), m.generate(long_prompt, 6, top_p=1e-6))
    with pytest.raises(ValueError, match="non-empty"):
        m.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    for kw in (dict(temperature=-0.5), dict(top_k=0), dict(top_p=2.0)):
        with pytest.raises(ValueError):
            m.generate(long_prompt, 2, **kw)
    with pytest.raises(ValueError, match="block_size"):
        m(long_prompt)


def test_generate_sees_only_the_last_block_size_tokens():
    """A long prompt continues exactly as its last block_size tokens do; earlier tokens have no effect."""
    set_seed(0)
    m = GPT(CFG)
    long_prompt = torch.randint(0, 11, (1, 40)).expand(200, -1)    # 200 sampled continuations
    draw = lambda prompt, n: m.generate(prompt, n, generator=torch.Generator().manual_seed(0))[:, -n:]
    a = draw(long_prompt, 6)
    assert torch.equal(a, draw(long_prompt[:, -16:], 6)) and len(set(a.flatten().tolist())) > 1
    changed = long_prompt.clone()
    changed[:, :24] = (changed[:, :24] + 1) % 11                   # only tokens outside the window differ
    assert torch.equal(draw(changed, 1), a[:, :1])


def test_kv_cache_gives_the_logits_of_the_full_forward():
    """Feeding a sequence in pieces through the cache (a prompt, single tokens, a chunk of 3)
    gives the logits of one forward pass over the whole sequence."""
    set_seed(0)
    m = GPT(CFG).eval()
    idx = torch.randint(0, 11, (3, 16))
    full = m(idx)[0]
    cache = m.new_cache()
    pieces = [(0, 5), (5, 6), (6, 7), (7, 10), (10, 11), (11, 16)]
    with torch.no_grad():
        out = torch.cat([m(idx[:, a:b], cache=cache)[0] for a, b in pieces], dim=1)
    assert (out - full).abs().max() < 1e-5
    assert GPT.cache_length(cache) == 16 and GPT.cache_length(m.new_cache()) == 0
    assert cache[0][0].shape == (3, CFG.n_head, 16, CFG.n_embd // CFG.n_head)
    with pytest.raises(ValueError, match="block_size"):            # the cache is full: no 17th position
        m(idx[:, :1], cache=cache)
    with pytest.raises(ValueError, match="cache"):
        m.blocks[0].attn(torch.zeros(1, 2, CFG.n_embd), return_weights=True, cache=[])
    wrong = m.new_cache()
    m(idx[:, :4], cache=wrong)
    with torch.no_grad():                                          # a cache for other tokens gives other logits
        assert (m(idx[:, 5:6], cache=wrong)[0][:, 0] - full[:, 5]).abs().max() > 1e-3


def test_cached_generate_writes_what_uncached_generate_writes():
    """Inside the window and past it (where the cache is given up), greedy and sampled."""
    set_seed(0)
    m = GPT(CFG)
    for prompt in (torch.randint(0, 11, (4, 3)), torch.randint(0, 11, (2, 16)), torch.randint(0, 11, (2, 30))):
        for kw in (dict(temperature=0), dict(temperature=1.0), dict(top_k=3), dict(top_p=0.9)):
            a = m.generate(prompt, 40, generator=torch.Generator().manual_seed(0), **kw)
            b = m.generate(prompt, 40, generator=torch.Generator().manual_seed(0), use_cache=False, **kw)
            assert torch.equal(a, b), (prompt.shape, kw)
    assert m.training                                              # generate restores the mode


def test_generate_with_cache_runs_each_token_through_the_model_once():
    """Count the positions the model processes: a prompt of 4 and 12 new tokens in a window
    of 16 cost 4 + 11 positions with the cache and 4 + 5 + ... + 15 without it."""
    set_seed(0)
    m = GPT(CFG)
    seen = []
    hook = m.wte.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    m.generate(torch.zeros(1, 4, dtype=torch.long), 12)
    cached, seen[:] = list(seen), []
    m.generate(torch.zeros(1, 4, dtype=torch.long), 12, use_cache=False)
    hook.remove()
    assert cached == [4] + [1] * 11 and sum(cached) == 15
    assert seen == list(range(4, 16)) and sum(seen) == 114


def test_gru_face_and_generate():
    set_seed(0)
    m = GRULM(GRUConfig(vocab_size=11, embed_dim=8, hidden_dim=16))
    idx = torch.randint(0, 11, (2, 9))
    logits, loss = m(idx, idx)
    assert logits.shape == (2, 9, 11) and loss.item() > 0
    out = m.generate(idx[:, :3], 5, temperature=0)
    # incremental generation with a carried state equals re-running the whole sequence
    assert torch.equal(out[:, 3:4], m(idx[:, :3])[0][:, -1].argmax(-1, keepdim=True))
    full = m(out[:, :-1])[0].argmax(-1)
    assert torch.equal(full[:, 2:], out[:, 3:])
    with pytest.raises(ValueError):
        m.generate(torch.zeros(1, 0, dtype=torch.long), 2)


def test_hidden_dim_for_matches_the_parameter_count():
    count = lambda h: sum(p.numel() for p in GRULM(GRUConfig(vocab_size=84, embed_dim=64, hidden_dim=h)).parameters())
    for target in (60_000, 415_744, 1_820_544):
        h = hidden_dim_for(target, 84, 64)
        assert h % 8 == 0
        # the closest multiple of 8: one step either way is further from the target
        assert abs(count(h) - target) <= min(abs(count(h - 8) - target), abs(count(h + 8) - target))
    assert hidden_dim_for(415_744, 84, 64, multiple=1) == 326   # 3 H^2 + 282 H + 5,460 = 415,744 at H = 325.8
    with pytest.raises(ValueError, match="do not even cover"):
        hidden_dim_for(1_000, 84, 64)


def test_attention_maps_use_from_scratch_attention_and_match_the_fused_model():
    set_seed(0)
    m = GPT(CFG).eval()
    idx = torch.randint(0, 11, (2, 10))
    logits, maps = m.attention_maps(idx)
    assert maps.shape == (2, 2, 2, 10, 10)
    assert (logits - m(idx)[0]).abs().max() <= 1e-5
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 10))
    assert (maps.triu(1) == 0).all()  # causal: nothing above the diagonal


def test_attention_maps_switch_dropout_off_and_restore_the_mode():
    set_seed(0)
    m = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.2))     # training mode
    idx = torch.randint(0, 12, (2, 8))
    (l1, w1), (l2, w2) = m.attention_maps(idx), m.attention_maps(idx)
    assert torch.equal(l1, l2) and torch.equal(w1, w2) and m.training
    assert torch.allclose(l1, m.eval()(idx)[0], atol=1e-5)
