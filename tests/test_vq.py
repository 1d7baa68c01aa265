import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.vq import VectorQuantizer, VQAutoencoder, VQConfig, code_perplexity, vq_loss


def test_nearest_is_the_closest_code_and_lookup_inverts_it():
    set_seed(0)
    vq = VectorQuantizer(n_codes=10, dim=3)
    torch.nn.init.normal_(vq.codebook.weight)
    z = torch.randn(2, 3, 4, 5)
    codes = vq.nearest(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(codes.flatten(), torch.cdist(flat, vq.codebook.weight).argmin(1))
    assert codes.shape == (2, 4, 5) and codes.dtype == torch.long
    grid = torch.arange(10).view(1, 2, 5)
    assert torch.equal(vq.nearest(vq.lookup(grid)), grid)                 # a code's own vector maps back to it
    with pytest.raises(ValueError, match="codes must be in 0..9"):
        vq.lookup(torch.full((1, 2, 2), 10))
    with pytest.raises(ValueError, match="feature map"):
        vq.nearest(torch.randn(2, 4, 3, 3))


def test_straight_through_gradient_and_the_two_loss_terms():
    set_seed(0)
    vq = VectorQuantizer(n_codes=6, dim=2, beta=0.25, restart_every=0)
    torch.nn.init.normal_(vq.codebook.weight)
    z = torch.randn(3, 2, 2, 2, requires_grad=True)
    z_q, codes, loss = vq(z)
    e = vq.lookup(codes)
    assert torch.allclose(z_q, e, atol=1e-6)                              # forward: the codes' vectors
    d = (z - e).pow(2).flatten(1).sum(1)
    assert torch.allclose(loss, 1.25 * d, atol=1e-5)                      # codebook + beta * commitment, per image
    (z_q * torch.arange(24.0).view(3, 2, 2, 2)).sum().backward(retain_graph=True)
    assert torch.equal(z.grad, torch.arange(24.0).view(3, 2, 2, 2))      # backward: copied straight through
    z.grad = None
    vq.codebook.weight.grad = None
    loss.sum().backward()
    assert torch.allclose(z.grad, 0.25 * 2 * (z - e).detach(), atol=1e-5)          # commitment only
    g = torch.zeros(6, 2).index_add_(0, codes.flatten(), (2 * (e - z).detach()).permute(0, 2, 3, 1).reshape(-1, 2))
    assert torch.allclose(vq.codebook.weight.grad, g, atol=1e-5)                      # codebook term only


def test_dead_codes_restart_onto_encoder_outputs():
    set_seed(0)
    vq = VectorQuantizer(n_codes=8, dim=2, restart_every=3).train()
    z = torch.randn(4, 2, 3, 3) + 10.0                                    # far from every initial code
    before = vq.codebook.weight.detach().clone()
    vq(z)
    vq(z)
    assert torch.equal(vq.codebook.weight, before) and vq.usage.sum() == 2 * 36
    used = set(vq.nearest(z).unique().tolist())
    vq(z)                                                                 # third step: restart
    moved = (vq.codebook.weight != before).any(1)
    assert moved.sum() == 8 - len(used) and not moved[list(used)].any()
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for row in vq.codebook.weight[moved]:
        assert (flat - row).abs().sum(1).min() < 1e-6                    # each moved code sits on an output
    assert vq.usage.sum() == 0
    vq.eval()
    for _ in range(3):
        vq(z)
    assert int(vq.steps) == 3                                             # no counting, no restarts in eval mode


def test_vq_autoencoder_shapes_errors_and_learning():
    set_seed(0)
    model = VQAutoencoder(VQConfig(image_size=8, channels=(8, 8), code_dim=4, n_codes=16, groups=4, restart_every=10))
    x = torch.rand(6, 1, 8, 8)
    x_hat, codes, loss = model(x)
    assert x_hat.shape == x.shape and codes.shape == (6, 2, 2) and loss.shape == (6,)
    assert model.grid == 2 and torch.equal(model.encode(x), codes)
    assert torch.allclose(model.decode(codes), x_hat, atol=1e-6)
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(2, 1, 7, 7))
    with pytest.raises(ValueError, match="expected codes"):
        model.decode(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot be halved"):
        VQAutoencoder(VQConfig(image_size=10, channels=(8, 8)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = vq_loss(model, (x, None)).item()
    for _ in range(150):
        loss = vq_loss(model, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_code_perplexity():
    assert code_perplexity(torch.arange(8).repeat(3), 8) == pytest.approx(8.0)
    assert code_perplexity(torch.full((20,), 3), 8) == pytest.approx(1.0)
    assert code_perplexity(torch.tensor([0, 0, 1, 1]), 8) == pytest.approx(2.0)
