"""Unit tests of aigc_helpers.stylegan: AdaIN, mapping, noise, synthesis and style mixing."""

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.stylegan import (AdaIN, MappingNetwork, NoiseInjection, SmallDiscriminator, StyleGANConfig,
                                   StyleGenerator, adain, blur_to_level, make_stylegan_step)

SMALL = StyleGANConfig(z_dim=8, w_dim=8, mapping_layers=2, channels=(8, 8, 4))


@pytest.fixture
def gen():
    torch.manual_seed(0)
    return StyleGenerator(SMALL)


def test_adain_statistics_equal_style():
    torch.manual_seed(0)
    x = 3.0 + 5.0 * torch.randn(4, 6, 8, 8)
    y_s = torch.rand(4, 6) * 2 + 0.5
    y_b = torch.randn(4, 6)
    out = adain(x, y_s, y_b)
    assert torch.allclose(out.mean(dim=(2, 3)), y_b, atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), y_s, atol=1e-3)


def test_adain_hand_example_and_formula():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)   # mean 2.5, std sqrt(1.25)
    out = adain(x, torch.tensor([[2.0]]), torch.tensor([[1.0]]), eps=0.0)
    expected = 2.0 * (x - 2.5) / 1.25 ** 0.5 + 1.0
    assert torch.allclose(out, expected, atol=1e-6)
    assert abs(out[0, 0, 0, 0].item() - (1 - 2 * 1.5 / 1.25 ** 0.5)) < 1e-5


def test_adain_module_uses_affine_style():
    torch.manual_seed(1)
    layer = AdaIN(5, 7)
    x, w = torch.randn(3, 5, 4, 4), torch.randn(3, 7)
    y_s, y_b = layer.style(w)
    assert y_s.shape == y_b.shape == (3, 5)
    manual = y_s[:, :, None, None] * F.instance_norm(x, eps=1e-5) + y_b[:, :, None, None]
    assert torch.allclose(layer(x, w), manual, atol=1e-5)
    # untrained style: y_s near 1 (bias), y_b near 0
    assert torch.allclose(layer.affine.bias[:5], torch.ones(5))


def test_adain_bad_shapes():
    with pytest.raises(ValueError, match="styles must have shape"):
        adain(torch.randn(2, 3, 4, 4), torch.ones(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="feature maps"):
        adain(torch.randn(2, 3, 4), torch.ones(2, 3), torch.zeros(2, 3))


def test_mapping_network_shapes_and_pixel_norm():
    torch.manual_seed(0)
    f = MappingNetwork(z_dim=8, w_dim=16, n_layers=3)
    z = torch.randn(5, 8)
    assert f(z).shape == (5, 16)
    assert torch.allclose(f(z), f(10 * z), atol=1e-5)   # z is normalised first: only its direction matters
    assert sum(isinstance(m, torch.nn.Linear) for m in f.net) == 3
    with pytest.raises(ValueError, match="z must have shape"):
        f(torch.randn(5, 7))


def test_noise_injection_zero_scale_is_identity_and_scales_per_channel():
    layer = NoiseInjection(3)
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.equal(layer(x, noise), x)
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([0.0, 1.0, 2.0]))
    out = layer(x, noise)
    assert torch.equal(out[:, 0], x[:, 0])
    assert torch.allclose(out[:, 2] - x[:, 2], 2 * noise[:, 0])
    with pytest.raises(ValueError, match="noise must have shape"):
        layer(x, torch.randn(2, 3, 4, 4))


def test_sample_shape_range_determinism(gen):
    assert gen.n_layers == 6 and gen.layer_sizes() == [4, 4, 8, 8, 16, 16]
    x = gen.sample(5, generator=torch.Generator().manual_seed(3))
    assert x.shape == (5, 1, 16, 16)
    assert x.min() >= 0 and x.max() <= 1 and not x.requires_grad
    y = gen.sample(5, generator=torch.Generator().manual_seed(3))
    z = gen.sample(5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(x, y) and not torch.allclose(x, z)
    t = gen.sample(5, generator=torch.Generator().manual_seed(3), truncation=0.0)
    assert t.shape == (5, 1, 16, 16)


def test_truncation_zero_maps_every_sample_to_the_mean_image(gen):
    """With psi = 0 every w is w_avg; with the noise scales at their initial 0 all samples are one image."""
    assert all(torch.equal(layer.noise.scale, torch.zeros_like(layer.noise.scale)) for layer in gen.layers)
    t = gen.sample(5, generator=torch.Generator().manual_seed(3), truncation=0.0)
    assert torch.allclose(t, t[:1].expand_as(t), atol=1e-6)
    x = gen.sample(5, generator=torch.Generator().manual_seed(3))
    assert (x - x[:1]).abs().max() > 1e-3                                 # without truncation they differ


def test_synthesize_fixed_noise_is_deterministic_and_noise_matters(gen):
    with torch.no_grad():
        for layer in gen.layers:
            layer.noise.scale.fill_(0.5)
        ws = gen.broadcast(gen.mapping(torch.randn(3, 8)))
        noise = gen.make_noise(3, torch.Generator().manual_seed(0))
        a, b = gen.synthesize(ws, noise), gen.synthesize(ws, noise)
        c = gen.synthesize(ws, gen.make_noise(3, torch.Generator().manual_seed(1)))
        d0 = gen.synthesize(ws, noise, noise_strength=0.0)
        d1 = gen.synthesize(ws, gen.make_noise(3, torch.Generator().manual_seed(1)), noise_strength=0.0)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.allclose(d0, d1)    # no noise: the image depends on w alone


def test_style_mixing_endpoints(gen):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    noise = gen.make_noise(4, g)
    L = gen.n_layers
    with torch.no_grad():
        w1, w2 = gen.mapping(z1), gen.mapping(z2)
        only_w2 = gen.synthesize(gen.broadcast(w2), noise)
        only_w1 = gen.synthesize(gen.broadcast(w1), noise)
        assert torch.allclose(gen.mix(z1, z2, 0, noise=noise), only_w2, atol=1e-6)
        assert torch.allclose(gen.mix(z1, z2, L, noise=noise), only_w1, atol=1e-6)
        middle = gen.mix(z1, z2, 2, noise=noise)
        assert not torch.allclose(middle, only_w1) and not torch.allclose(middle, only_w2)
        ws = gen.mix_ws(w1, w2, torch.tensor([0, 1, 3, 6]))         # one crossover per sample
        assert torch.equal(ws[2, :3], w1[2].expand(3, -1)) and torch.equal(ws[2, 3:], w2[2].expand(3, -1))
        assert torch.equal(ws[0], w2[0].expand(L, -1)) and torch.equal(ws[3], w1[3].expand(L, -1))


def test_progressive_growing_levels(gen):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ws = gen.broadcast(gen.mapping(torch.randn(2, 8, generator=g))).clone()
        noise = gen.make_noise(2, g)
        other = ws.clone()
        other[:, 2:] = torch.randn(2, 4, 8, generator=g)           # new styles for the 8x8 and 16x16 layers
        low = gen.synthesize(ws, noise, level=0)
        assert low.shape == (2, 1, 16, 16)
        assert torch.allclose(low, gen.synthesize(other, noise, level=0))      # level 0: only 4x4 layers count
        assert not torch.allclose(gen.synthesize(ws, noise, level=1.5), gen.synthesize(other, noise, level=1.5))
        assert torch.equal(gen.synthesize(ws, noise), gen.synthesize(ws, noise, level=2))


def test_blur_to_level():
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(blur_to_level(x, 2), x)                          # 16x16 is the full size
    four = F.avg_pool2d(x, 4)                                            # (3, 1, 4, 4)
    assert torch.allclose(blur_to_level(x, 0), F.interpolate(four, size=(16, 16), mode="bilinear"), atol=1e-6)
    half = blur_to_level(x, 1.5)
    assert torch.allclose(half, 0.5 * blur_to_level(x, 1) + 0.5 * x, atol=1e-6)
    assert torch.allclose(blur_to_level(x, 0).mean(), x.mean(), atol=0.02)


def test_bad_inputs(gen):
    with pytest.raises(ValueError, match="positive"):
        gen.sample(0)
    with pytest.raises(ValueError, match="positive"):
        gen.sample(-2)
    with pytest.raises(ValueError, match="unconditional"):
        gen.sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ws must have shape"):
        gen.synthesize(torch.randn(2, 5, 8))                         # 5 layers instead of 6
    with pytest.raises(ValueError, match="ws must have shape"):
        gen.synthesize(torch.randn(2, 8))                            # one w, not one per layer
    with pytest.raises(ValueError, match="crossover"):
        gen.mix(torch.randn(2, 8), torch.randn(2, 8), 7)
    with pytest.raises(ValueError, match="truncation"):
        gen.sample(2, truncation=1.5)
    with pytest.raises(ValueError, match="expected images"):
        SmallDiscriminator(16, 1)(torch.rand(2, 1, 8, 8))


def test_one_training_step_changes_both_networks(gen):
    torch.manual_seed(0)
    disc = SmallDiscriminator(16, 1, width=8)

    step = make_stylegan_step(gen, disc, lr=1e-2, generator=torch.Generator().manual_seed(0))
    before_g = [p.detach().clone() for p in gen.parameters()]
    before_d = [p.detach().clone() for p in disc.parameters()]
    logs = step((torch.rand(8, 1, 16, 16), torch.zeros(8)), 0)
    assert set(logs) >= {"loss", "d_loss", "g_loss", "level"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["level"] == 2.0                                         # no growing: full size from step 0
    grow = make_stylegan_step(gen, disc, grow_steps=10)
    levels = [grow((torch.rand(8, 1, 16, 16),), k)["level"] for k in range(6)]
    assert levels[5] == 1.0                                             # the sixth step of ten: level 2 * 5 / 10
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gen.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, disc.parameters()))
    assert abs(logs["d_loss"] - 2 * 0.6931) < 0.3    # near log 4 for an undecided discriminator


def test_mapping_network_learns_mapping_lr_mult_times_more_slowly(gen):
    """Adam's first step moves each weight by about its lr: lr for synthesis, lr * 0.1 for the mapping net."""
    torch.manual_seed(0)
    step = make_stylegan_step(gen, SmallDiscriminator(16, 1, width=8), lr=1e-2,
                              generator=torch.Generator().manual_seed(0))
    mapping = list(gen.mapping.parameters())
    rest = [p for p in gen.parameters() if all(p is not q for q in mapping)]
    before = [p.detach().clone() for p in mapping + rest]
    step(torch.rand(8, 1, 16, 16), 0)
    moves = [(p.detach() - b).abs().max().item() for p, b in zip(mapping + rest, before)]
    assert SMALL.mapping_lr_mult == 0.1
    assert max(moves[:len(mapping)]) == pytest.approx(1e-3, rel=0.01)
    assert max(moves[len(mapping):]) == pytest.approx(1e-2, rel=0.01)


def test_style_mixing_regularisation_mixes_a_mixing_prob_share_of_fakes(gen):
    """Each fake gets a crossover in [1, L-1] with probability mixing_prob, else none (crossover L)."""
    crossovers = []
    mix_ws = gen.mix_ws

    def spy(w1, w2, crossover):
        crossovers.append(crossover.clone())
        return mix_ws(w1, w2, crossover)

    gen.mix_ws = spy
    step = make_stylegan_step(gen, SmallDiscriminator(16, 1, width=8), mixing_prob=0.3,
                              generator=torch.Generator().manual_seed(0))
    for i in range(4):
        step(torch.rand(64, 1, 16, 16), i)
    c = torch.cat(crossovers)                                            # 4 steps x 2 fake batches x 64
    L = gen.n_layers
    assert len(c) == 512 and c.min() >= 1 and c.max() <= L
    assert (c < L).float().mean().item() == pytest.approx(0.3, abs=0.07)   # sd of the share: 0.02
    assert set((c[c < L]).tolist()) == set(range(1, L))


def test_truncation_keeps_the_noise_and_growth_continues_over_train_calls():
    from aigc_helpers.stylegan import StyleGenerator, make_stylegan_step
    from aigc_helpers.train import train
    torch.manual_seed(0)
    G = StyleGenerator().eval()
    a = G.sample(4, generator=torch.Generator().manual_seed(1), truncation=1.0)
    b = G.sample(4, generator=torch.Generator().manual_seed(1), truncation=1.0 - 1e-9)
    assert torch.allclose(a, b, atol=1e-4)                               # the same z and the same noise
    assert G.double().sample(2).dtype == torch.float64
    G = StyleGenerator()
    size = G.config.image_size if hasattr(G.config, "image_size") else 16
    step = make_stylegan_step(G, SmallDiscriminator(size, 1, 8), grow_steps=4)
    data = lambda: torch.rand(4, 1, size, size)
    h1 = train(G, data, 3, step_fn=step, device="cpu", progress=False)
    h2 = train(G, data, 3, step_fn=step, device="cpu", progress=False)
    top = G.config.max_level
    assert h1.logs["level"] == [0.0, top / 4, top / 2] and h2.logs["level"][0] == top * 3 / 4
