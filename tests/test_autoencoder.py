import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.autoencoder import Autoencoder, AutoencoderConfig, ResidualConv, autoencoder_loss, latent_scale


def small(**kw) -> Autoencoder:
    set_seed(0)
    cfg = dict(in_channels=1, image_size=16, channels=(16, 32), latent_channels=4, groups=8)
    cfg.update(kw)
    return Autoencoder(AutoencoderConfig(**cfg))


def test_shapes_and_factor():
    model = small()
    assert model.factor == 4
    assert model.latent_shape == (4, 4, 4)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 4, 4, 4)
    x_hat, mu2, logvar2 = model(x, torch.Generator().manual_seed(1))
    assert x_hat.shape == x.shape
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    out = model.decode(10 * torch.randn(5, 4, 4, 4, generator=torch.Generator().manual_seed(2)))
    assert out.shape == (5, 1, 16, 16)
    assert out.min() >= 0 and out.max() <= 1                            # a sigmoid: images in [0, 1]


def test_three_halvings_and_rgb():
    model = small(in_channels=3, image_size=32, channels=(8, 16, 16), latent_channels=2)
    assert model.factor == 8 and model.latent_shape == (2, 4, 4)
    x_hat, mu, _ = model(torch.rand(2, 3, 32, 32))
    assert x_hat.shape == (2, 3, 32, 32) and mu.shape == (2, 2, 4, 4)


def test_errors():
    model = small()
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        model.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        model.encode(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 4, 4, 4\)"):
        model.decode(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 4, 4, 4\)"):
        model.decode(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="cannot be halved"):
        small(image_size=30)                                            # 30 is not divisible by 4
    with pytest.raises(ValueError, match="cannot be halved"):
        small(image_size=28, channels=(8, 16, 16))                      # 28 is not divisible by 8


def test_residual_conv_keeps_the_shape_and_is_residual():
    set_seed(0)
    block = ResidualConv(16, 8)
    x = torch.randn(2, 16, 5, 5)
    assert block(x).shape == x.shape
    torch.nn.init.zeros_(block.conv.weight)
    torch.nn.init.zeros_(block.conv.bias)
    assert torch.equal(block(x), x)                                     # x + conv(...) with conv = 0


def test_logvar_is_clamped():
    model = small()
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:4] = 0.0
        last.bias[4:] = 100.0                                           # log sigma^2 = 100 before the clamp
    _, logvar = model.encode(torch.rand(2, 1, 16, 16))
    assert torch.allclose(logvar, torch.full_like(logvar, 20.0))
    with torch.no_grad():
        last.bias[4:] = -100.0
    _, logvar = model.encode(torch.rand(2, 1, 16, 16))
    assert torch.allclose(logvar, torch.full_like(logvar, -30.0))


def test_encoder_sees_minus_one_to_one():
    model = small()
    seen = []
    model.encoder[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    model.encode(torch.zeros(1, 1, 16, 16))
    model.encode(torch.ones(1, 1, 16, 16))
    assert torch.equal(seen[0], -torch.ones(1, 1, 16, 16)) and torch.equal(seen[1], torch.ones(1, 1, 16, 16))


def test_loss_equals_the_hand_computation():
    model = small(kl_weight=0.25)                                       # a visible KL share
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2, 3])
    loss = autoencoder_loss(model, (x, labels), torch.Generator().manual_seed(7))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
        x_hat = model.decode(mu + (0.5 * logvar).exp() * eps)
        rec = ((x_hat - x) ** 2).sum(dim=(1, 2, 3))
        kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(dim=(1, 2, 3))
        expected = (rec + 0.25 * kl).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl.min() > 0                                                 # the KL part is really in there
    # a bare tensor works as the batch, and the same generator gives the same loss
    assert autoencoder_loss(model, x, torch.Generator().manual_seed(7)).item() == pytest.approx(loss.item(), rel=1e-6)
    other = autoencoder_loss(model, x, torch.Generator().manual_seed(8)).item()
    assert other != loss.item()                                         # z is drawn, not the mean


def test_loss_gradients_reach_encoder_and_decoder():
    model = small()
    loss = autoencoder_loss(model, torch.rand(2, 1, 16, 16), torch.Generator().manual_seed(0))
    loss.backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.decoder[-1].weight.grad.abs().sum() > 0


def test_overfits_a_tiny_batch():
    model = small(channels=(8, 16), kl_weight=1e-4)
    g = torch.Generator().manual_seed(0)
    # 8 blobs: bright squares at different places and brightness
    x = torch.zeros(8, 1, 16, 16)
    for i in range(8):
        r, c = divmod(i, 4)
        x[i, 0, 2 + 6 * r:8 + 6 * r, 1 + 3 * c:6 + 3 * c] = 0.4 + 0.08 * i
    x = (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)

    def rec_error():
        with torch.no_grad():
            return ((model.decode(model.encode(x)[0]) - x) ** 2).sum(dim=(1, 2, 3)).mean().item()

    before = rec_error()
    opt = torch.optim.Adam(model.parameters(), lr=8e-3)
    for _ in range(80):
        opt.zero_grad()
        autoencoder_loss(model, x, g).backward()
        opt.step()
    after = rec_error()
    print("reconstruction error per image", before, "->", after)
    assert after < 0.05 * before                                        # about 56 -> 0.4
    assert after < 2.0                                                  # summed over 256 pixels


def test_latent_scale_is_one_over_the_std_of_the_means():
    model = small()
    x = torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu, _ = model.encode(x)
    expected = 1.0 / mu.std().item()
    assert latent_scale(model, x) == pytest.approx(expected, rel=1e-5)
    assert latent_scale(model, x, batch_size=3) == pytest.approx(expected, rel=1e-5)   # batching changes nothing
    with torch.no_grad():                                               # means twice as large: half the scale
        model.encoder[-1].weight[:4] *= 2
        model.encoder[-1].bias[:4] *= 2
    assert latent_scale(model, x) == pytest.approx(expected / 2, rel=1e-4)
    model.train()
    latent_scale(model, x)
    assert model.training                                               # the mode is restored
    model.eval()
    latent_scale(model, x)
    assert not model.training


def test_decoder_mirrors_the_encoder_whatever_the_image_channels():
    from aigc_helpers.autoencoder import conv_decoder
    kinds = lambda out: [type(l).__name__ for l in conv_decoder(4, (16, 32), out, 4)]
    assert kinds(16) == kinds(3) == ["Conv2d", "ResidualConv", "SiLU", "ConvTranspose2d", "ResidualConv",
                                     "SiLU", "ConvTranspose2d"]
