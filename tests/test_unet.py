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
