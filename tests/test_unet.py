import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.transformer import sinusoidal_encoding
from aigc_helpers.unet import MLPDenoiser, UNet, UNetConfig, timestep_embedding


def test_timestep_embedding_is_the_positional_encoding():
    t = torch.tensor([0, 1, 5, 99])
    assert torch.allclose(timestep_embedding(t, 16), sinusoidal_encoding(100, 16)[t], atol=1e-5)
    e = timestep_embedding(torch.tensor([0]), 8)
    assert torch.equal(e[0, 0::2], torch.zeros(4)) and torch.equal(e[0, 1::2], torch.ones(4))   # sin 0, cos 0
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(t, 7)


@pytest.mark.parametrize("size, mults", [(8, (1, 2)), (8, (1, 2, 2)), (28, (1, 2, 2))])
def test_unet_keeps_the_shape(size, mults):
    set_seed(0)
    net = UNet(UNetConfig(image_size=size, base=8, mults=mults, t_dim=8, groups=4))
    x = torch.randn(3, 1, size, size)
    out = net(x, torch.tensor([0, 5, 9]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))                       # zero-initialised output layer


def test_unet_output_depends_on_the_image_and_the_step():
    set_seed(0)
    net = UNet(UNetConfig(base=8, t_dim=8, groups=4))
    torch.nn.init.normal_(net.out.weight, std=0.1)                      # leave the zero start behind
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([3, 3])
    base = net(x, t)
    assert not torch.allclose(base, net(x, torch.tensor([40, 40])), atol=1e-4)   # the step matters
    x2 = x.clone()
    x2[:, :, 0, 0] += 1.0
    changed = (net(x2, t) - base).abs()[0, 0]
    assert changed[0, 0] > 0 and changed[7, 7] > 0                      # one pixel reaches the far corner


def test_unet_per_example_independence():
    set_seed(0)
    net = UNet(UNetConfig(base=8, t_dim=8, groups=4)).eval()
    torch.nn.init.normal_(net.out.weight, std=0.1)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    together = net(x, t)
    alone = torch.cat([net(x[i:i + 1], t[i:i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)                   # GroupNorm, not BatchNorm


def test_unet_errors():
    net = UNet(UNetConfig(base=8, t_dim=8, groups=4))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        net(torch.zeros(2, 1, 6, 6), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one step per example"):
        net(torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="halved"):
        UNet(UNetConfig(image_size=6, mults=(1, 2, 2)))


def test_mlp_denoiser_shapes_and_errors():
    net = MLPDenoiser(dim=3, hidden=16, n_layers=2, t_dim=8)
    out = net(torch.randn(5, 3), torch.arange(5))
    assert out.shape == (5, 3)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        net(torch.randn(5, 2), torch.arange(5))
    with pytest.raises(ValueError, match="one step per example"):
        net(torch.randn(5, 3), torch.arange(4))


def test_conditional_unet_labels():
    set_seed(0)
    net = UNet(UNetConfig(base=8, t_dim=8, groups=4, n_classes=10)).eval()
    torch.nn.init.normal_(net.out.weight, std=0.1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([4, 4])
    none = net(x, t)
    assert torch.equal(none, net(x, t, torch.tensor([10, 10])))         # no labels = the "no label" class
    assert not torch.allclose(none, net(x, t, torch.tensor([3, 3])), atol=1e-4)
    assert not torch.allclose(net(x, t, torch.tensor([3, 3])), net(x, t, torch.tensor([7, 7])), atol=1e-4)
    with pytest.raises(ValueError, match=r"in 0\.\.10"):
        net(x, t, torch.tensor([3, 11]))
    with pytest.raises(ValueError, match=r"in 0\.\.10"):
        net(x, t, torch.tensor([3]))


# --------------------------------------------------------------------------- cross-attention


def context_unet(n_head=2, **kw):
    set_seed(0)
    return UNet(UNetConfig(image_size=8, base=8, mults=(1, 2), t_dim=8, groups=4, context_dim=6, n_head=n_head,
                           **kw)).eval()


def wake_up(net, attention=True):
    """Leave the zero starts behind: the output layer and (optionally) every cross-attention's output."""
    torch.manual_seed(1)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    if attention:
        for layer in net.attn:
            torch.nn.init.normal_(layer.attn.out_proj.weight, std=0.3)


def test_cross_attention_shape_and_identity_start():
    from aigc_helpers.unet import CrossAttention
    set_seed(0)
    layer = CrossAttention(channels=8, context_dim=6, n_head=2, groups=4)
    h, ctx = torch.randn(2, 8, 3, 5), torch.randn(2, 4, 6)
    assert torch.equal(layer(h, ctx), h)                               # zero output projection: the identity
    torch.nn.init.normal_(layer.attn.out_proj.weight, std=0.3)
    out = layer(h, ctx)
    assert out.shape == h.shape and not torch.allclose(out, h, atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        CrossAttention(channels=8, context_dim=6, n_head=3, groups=4)


def test_cross_attention_matches_a_hand_computation():
    from aigc_helpers.unet import CrossAttention
    set_seed(0)
    layer = CrossAttention(channels=4, context_dim=3, n_head=1, groups=2)
    torch.nn.init.normal_(layer.attn.out_proj.weight)
    h, ctx = torch.randn(1, 4, 2, 2), torch.randn(1, 5, 3)
    a = layer.attn
    q = a.q_proj(layer.norm(h).flatten(2).transpose(1, 2))              # (1, 4 positions, 4)
    kv = layer.context_proj(ctx)
    k, v = a.k_proj(kv), a.v_proj(kv)
    w = (q @ k.transpose(1, 2) / 2.0).softmax(-1)                       # sqrt(d_head) = 2
    y = a.out_proj(w @ v)                                               # (1, 4, 4)
    expected = h + y.transpose(1, 2).reshape(1, 4, 2, 2)
    assert torch.allclose(layer(h, ctx), expected, atol=1e-5)


def test_context_unet_keeps_the_shape_and_starts_blind_to_the_context():
    net = context_unet()
    assert len(net.attn) == 5                                           # 2 down, 1 middle, 2 up
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    ctx1, ctx2 = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    out = net(x, t, context=ctx1)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(out))   # zero output layer
    wake_up(net, attention=False)
    out1 = net(x, t, context=ctx1)
    assert out1.abs().max() > 1e-3
    assert torch.equal(out1, net(x, t, context=ctx2))                  # cross-attention starts as the identity
    assert torch.equal(out1, net(x, t, context=torch.randn(2, 7, 6)))  # any number of tokens
    wake_up(net)
    assert not torch.allclose(net(x, t, context=ctx1), net(x, t, context=ctx2), atol=1e-4)


def test_context_unet_per_example_independence():
    net = context_unet()
    wake_up(net)
    x, t, ctx = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3]), torch.randn(3, 4, 6)
    together = net(x, t, context=ctx)
    alone = torch.cat([net(x[i:i + 1], t[i:i + 1], context=ctx[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_context_mask_hides_tokens():
    net = context_unet()
    wake_up(net)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    ctx = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, True], [True, False, False, True]])
    other = ctx.clone()
    other[0, 2] = torch.randn(6) * 5                                    # change hidden tokens only
    other[1, 1:3] = torch.randn(2, 6) * 5
    base = net(x, t, context=ctx, context_mask=mask)
    assert torch.allclose(base, net(x, t, context=other, context_mask=mask), atol=1e-6)
    assert not torch.allclose(net(x, t, context=ctx), net(x, t, context=other), atol=1e-4)   # unmasked: seen
    # a visible token still matters
    seen = ctx.clone()
    seen[0, 0] += 3.0
    assert not torch.allclose(base[0], net(x, t, context=seen, context_mask=mask)[0], atol=1e-4)
    # hiding tokens = leaving them out
    assert torch.allclose(base[:1], net(x[:1], t[:1], context=ctx[:1, [0, 1, 3]]), atol=1e-5)


def test_context_unet_errors():
    net = context_unet()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    with pytest.raises(ValueError, match=r"context of shape \(2, L, 6\)"):
        net(x, t)
    with pytest.raises(ValueError, match=r"context of shape \(2, L, 6\)"):
        net(x, t, context=torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"context of shape \(2, L, 6\)"):
        net(x, t, context=torch.randn(3, 4, 6))
    with pytest.raises(ValueError, match=r"context of shape \(2, L, 6\)"):
        net(x, t, context=torch.randn(2, 6))
    with pytest.raises(ValueError, match="context_mask must have shape"):
        net(x, t, context=torch.randn(2, 4, 6), context_mask=torch.ones(2, 3, dtype=torch.bool))
    plain = UNet(UNetConfig(base=8, t_dim=8, groups=4))
    assert plain.attn is None
    with pytest.raises(ValueError, match="no cross-attention"):
        plain(x, t, context=torch.randn(2, 4, 6))


def test_attn_levels_choose_where_the_prompt_is_read():
    net = context_unet(attn_levels=(1,))                                # 4x4 and the middle only
    assert len(net.attn) == 3 and net.attn_level == [1, 1, 1]
    assert net.attn_slots == [False, True, True, True, False]           # down 8x8, down 4x4, middle, up 4x4, up 8x8
    wake_up(net)
    x, t, ctx = torch.randn(2, 1, 8, 8), torch.tensor([3, 7]), torch.randn(2, 5, 6)
    for layer in net.attn:
        layer.keep_weights = True
    out = net(x, t, context=ctx)
    assert all(layer.attn.last_weights.shape == (2, 2, 16, 5) for layer in net.attn)   # every one at 4x4
    assert not torch.allclose(out, net(x, t, context=torch.randn(2, 5, 6)), atol=1e-4)  # it still reads the prompt
    middle_only = context_unet(attn_levels=())
    assert len(middle_only.attn) == 1 and middle_only.attn_level == [1]
    full = context_unet(attn_levels=(0, 1))
    assert full.attn_level == [0, 1, 1, 1, 0] and sum(p.numel() for p in full.parameters()) > \
        sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="attn_levels must be in 0..1"):
        context_unet(attn_levels=(2,))


def test_keep_weights_gives_attention_rows_that_sum_to_one():
    net = context_unet(n_head=2)
    x, t, ctx = torch.randn(2, 1, 8, 8), torch.tensor([3, 7]), torch.randn(2, 5, 6)
    assert net.attn[0].attn.last_weights is None
    net(x, t, context=ctx)
    assert net.attn[0].attn.last_weights is None                       # only kept when asked
    for layer in (net.attn[0], net.attn[2]):
        layer.keep_weights = True
    mask = torch.tensor([[True] * 5, [True, True, False, False, True]])
    fast = net(x, t, context=ctx, context_mask=mask)
    w = net.attn[0].attn.last_weights
    assert w.shape == (2, 2, 64, 5)                                     # (B, n_head, H*W, L) at 8x8
    assert net.attn[2].attn.last_weights.shape == (2, 2, 16, 5)         # the middle block works at 4x4
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 64), atol=1e-5)
    assert (w[1, :, :, 2:4] == 0).all() and (w[0] > 0).all()           # masked tokens get no weight
    for layer in (net.attn[0], net.attn[2]):
        layer.keep_weights = False
    assert torch.allclose(fast, net(x, t, context=ctx, context_mask=mask), atol=1e-6)   # same result either way


def test_unet_with_labels_and_context():
    net = context_unet(n_classes=3)
    wake_up(net)
    torch.nn.init.normal_(net.label_emb.weight)
    x, t, ctx = torch.randn(2, 1, 8, 8), torch.tensor([3, 7]), torch.randn(2, 4, 6)
    a = net(x, t, torch.tensor([0, 1]), context=ctx)
    assert not torch.allclose(a, net(x, t, torch.tensor([2, 2]), context=ctx), atol=1e-4)
    assert not torch.allclose(a, net(x, t, torch.tensor([0, 1]), context=ctx.flip(0)), atol=1e-4)


def test_empty_labels_give_the_label_error():
    u = UNet(UNetConfig(base=8, t_dim=8, groups=4, n_classes=10))
    with pytest.raises(ValueError, match="expected labels"):
        u(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([], dtype=torch.long))
