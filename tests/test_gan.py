"""Unit tests of aigc_helpers.gan: losses, gradient penalty, models, the training step, mode coverage."""

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers import set_seed
from aigc_helpers.data import ring_centers, toy_2d
from aigc_helpers.gan import (DCDiscriminator, DCGANConfig, DCGenerator, GANConfig, GANPair, MLPDiscriminator,
                              MLPGenerator, gan_d_loss, gan_g_loss, gan_g_loss_minimax, gradient_penalty,
                              make_gan_step, mode_counts, modes_covered, wgan_critic_loss, wgan_g_loss)
from aigc_helpers.train import train

# ----------------------------------------------------------------------------- losses


def test_d_loss_by_hand():
    # D(x) = sigmoid(logit): logit 0 -> 1/2, logit log 3 -> 3/4, logit -log 3 -> 1/4
    real = torch.tensor([0.0, math.log(3)])
    fake = torch.tensor([-math.log(3), 0.0])
    want = -(math.log(0.5) + math.log(0.75)) / 2 - (math.log(0.75) + math.log(0.5)) / 2
    assert gan_d_loss(real, fake).item() == pytest.approx(want, abs=1e-6)
    assert gan_d_loss(torch.zeros(5), torch.zeros(7)).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_d_loss_matches_pytorch_bce():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g) * 3
    ref = (F.binary_cross_entropy_with_logits(real, torch.ones(16))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros(16)))
    assert gan_d_loss(real, fake).item() == pytest.approx(ref.item(), abs=1e-6)


def test_generator_losses_by_hand():
    fake = torch.tensor([math.log(3), -math.log(3)])          # D = 3/4 and 1/4
    assert gan_g_loss(fake).item() == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, abs=1e-6)
    assert gan_g_loss_minimax(fake).item() == pytest.approx((math.log(0.25) + math.log(0.75)) / 2, abs=1e-6)
    # finite even when D is saturated
    assert torch.isfinite(gan_g_loss(torch.tensor([-200.0])))
    assert gan_g_loss(torch.tensor([-200.0])).item() == pytest.approx(200.0, rel=1e-6)


def test_saturating_loss_has_vanishing_gradient():
    # at D(G(z)) = sigmoid(-8) ~ 3e-4 the minimax loss barely moves the logit; -log D pushes with slope ~1
    a = torch.tensor([-8.0], requires_grad=True)
    gan_g_loss_minimax(a).backward()
    b = torch.tensor([-8.0], requires_grad=True)
    gan_g_loss(b).backward()
    assert abs(a.grad.item()) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-4)
    assert abs(b.grad.item()) == pytest.approx(1 - torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-4)


def test_wgan_losses_by_hand():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0, 1.0])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(0.0 - 2.0)
    assert wgan_g_loss(fake).item() == pytest.approx(0.0)
    assert wgan_g_loss(torch.tensor([2.0, 4.0])).item() == pytest.approx(-3.0)


def test_losses_reject_empty():
    with pytest.raises(ValueError, match="non-empty"):
        gan_d_loss(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        gan_g_loss(torch.zeros(0))


# ----------------------------------------------------------------------------- gradient penalty


@pytest.mark.parametrize("w", [[3.0, 4.0], [0.6, 0.8], [0.1, 0.0]])
def test_gradient_penalty_linear_critic(w):
    w = torch.tensor(w)
    critic = lambda x: x @ w                                   # grad_x f = w everywhere
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    gp, norms = gradient_penalty(critic, real, fake, return_norms=True)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, abs=1e-5)
    assert torch.allclose(norms, torch.full((8,), w.norm().item()))


def test_gradient_penalty_backpropagates_into_critic():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))
    gp = gradient_penalty(lambda x: lin(x).squeeze(-1), torch.randn(4, 2), torch.randn(4, 2))
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 2 * 4 * (0.6, 0.8)
    assert torch.allclose(lin.weight.grad, torch.tensor([[4.8, 6.4]]), atol=1e-5)


def test_gradient_penalty_images_and_determinism():
    set_seed(0)
    D = DCDiscriminator(DCGANConfig(image_size=8, width=8, d_batchnorm=False))
    real, fake = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    a = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1))
    b = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item() and a.item() >= 0
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(D, real, fake[:3])


# ----------------------------------------------------------------------------- models


def test_mlp_shapes_and_errors():
    cfg = GANConfig(z_dim=3, hidden=16, n_layers=2)
    G, D = MLPGenerator(cfg), MLPDiscriminator(cfg)
    x = G.sample(10)
    assert x.shape == (10, 2) and not x.requires_grad
    assert D(x).shape == (10,)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        D(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        G(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="positive"):
        GANConfig(hidden=0)


@pytest.mark.parametrize("size", [8, 16, 28])
def test_dcgan_shapes_range_and_determinism(size):
    set_seed(0)
    cfg = DCGANConfig(image_size=size, z_dim=8, width=8)
    G, D = DCGenerator(cfg), DCDiscriminator(cfg)
    G.train()
    x = G.sample(6, generator=torch.Generator().manual_seed(3))
    y = G.sample(6, generator=torch.Generator().manual_seed(3))
    assert x.shape == (6, 1, size, size)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, y)                                  # same generator seed, same samples
    assert G.training                                         # sample() restores the mode
    assert not torch.equal(x, G.sample(6, generator=torch.Generator().manual_seed(4)))
    assert D(x).shape == (6,)


def test_bad_inputs():
    cfg = DCGANConfig(image_size=16, z_dim=8, width=8)
    G, D = DCGenerator(cfg), DCDiscriminator(cfg)
    for n in (0, -3):
        with pytest.raises(ValueError, match="positive"):
            G.sample(n)
    with pytest.raises(ValueError, match="positive"):
        MLPGenerator().sample(0)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        D(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        D(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        D(torch.rand(16, 16))
    with pytest.raises(ValueError, match="unconditional"):
        G.sample(4, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of 4"):
        DCGANConfig(image_size=10)
    with pytest.raises(ValueError, match="loss must be"):
        make_gan_step(G, D, loss="hinge")
    with pytest.raises(ValueError, match="n_critic"):
        make_gan_step(G, D, n_critic=0)


# ----------------------------------------------------------------------------- training step


def test_gan_step_learns_a_shift():
    """A linear G fed to the step function moves its samples onto a 1-D Gaussian at +3."""
    set_seed(0)
    cfg = GANConfig(data_dim=1, z_dim=1, hidden=8, n_layers=1)
    G, D = MLPGenerator(cfg), MLPDiscriminator(cfg)
    start = G.sample(1000).mean().item()
    step = make_gan_step(G, D, lr_g=1e-2, lr_d=1e-2)
    g = torch.Generator().manual_seed(0)
    hist = train(GANPair(G, D), lambda: 3 + 0.5 * torch.randn(64, 1, generator=g), 150,
                 step_fn=step, progress=False, device="cpu")
    assert set(hist.logs) == {"d_loss", "g_loss"} and len(hist.loss) == 150
    assert abs(start - 3) > 2
    assert abs(G.sample(1000).mean().item() - 3) < 0.5


@pytest.mark.parametrize("loss, kw", [("minimax", {}),
                                      ("wgan-gp", dict(n_critic=3, gp_weight=0.3, betas=(0.5, 0.9)))])
def test_minimax_and_wgan_gp_steps_learn_a_shift(loss, kw):
    """The saturating and the WGAN-GP losses also move G's samples from near 0 onto the data's mean +3."""
    set_seed(0)
    cfg = GANConfig(data_dim=1, z_dim=1, hidden=8, n_layers=1)
    G, D = MLPGenerator(cfg), MLPDiscriminator(cfg)
    start = G.sample(1000).mean().item()
    step = make_gan_step(G, D, loss=loss, lr_g=1e-2, lr_d=1e-2, **kw)
    g = torch.Generator().manual_seed(0)
    train(GANPair(G, D), lambda: 3 + 0.5 * torch.randn(64, 1, generator=g), 150,
          step_fn=step, progress=False, device="cpu")
    assert abs(start - 3) > 2
    assert abs(G.sample(1000).mean().item() - 3) < 1     # measured over seeds 0-5: within 0.65


def test_step_makes_n_critic_critic_updates_per_generator_update():
    """One call of the step function is n_critic Adam steps of D and one of G."""
    set_seed(0)
    cfg = GANConfig(hidden=16, n_layers=2)
    G, D = MLPGenerator(cfg), MLPDiscriminator(cfg)
    step = make_gan_step(G, D, loss="wgan-gp", n_critic=3)
    x = toy_2d("ring", 64)[0]
    for calls in (1, 2):
        step(x, calls - 1)
        assert all(step.opt_d.state[p]["step"].item() == 3 * calls for p in D.parameters())
        assert all(step.opt_g.state[p]["step"].item() == calls for p in G.parameters())


def test_decay_steps_lowers_both_learning_rates_linearly_to_zero():
    """With decay_steps=4, call c (from 0) runs at lr * max(0, 1 - c/4): 1, 3/4, 1/2, 1/4, 0, 0."""
    set_seed(0)
    cfg = GANConfig(hidden=16, n_layers=2)
    G, D = MLPGenerator(cfg), MLPDiscriminator(cfg)
    step = make_gan_step(G, D, lr_g=1e-2, lr_d=2e-2, decay_steps=4)
    x = toy_2d("ring", 64)[0]
    lrs = []
    for c in range(6):
        step(x, c)
        lrs.append([step.opt_g.param_groups[0]["lr"], step.opt_d.param_groups[0]["lr"]])
    scales = torch.tensor([1, 0.75, 0.5, 0.25, 0, 0], dtype=torch.float64)
    assert torch.allclose(torch.tensor(lrs, dtype=torch.float64), scales[:, None] * torch.tensor([1e-2, 2e-2]))
    last = [p.detach().clone() for p in G.parameters()]
    step(x, 6)                                            # lr 0: the generator no longer moves
    assert all(torch.equal(a, b) for a, b in zip(last, G.parameters()))


def test_wgan_gp_step_logs():
    set_seed(0)
    cfg = GANConfig(hidden=16, n_layers=2)
    step = make_gan_step(MLPGenerator(cfg), MLPDiscriminator(cfg), loss="wgan-gp", n_critic=2)
    logs = step(toy_2d("ring", 64)[0], 0)
    assert {"loss", "d_loss", "g_loss", "gp", "grad_norm", "w_dist"} <= set(logs)
    assert all(math.isfinite(v) for v in logs.values())


# ----------------------------------------------------------------------------- mode coverage


def test_modes_covered_by_hand():
    centers = ring_centers()                                   # (8, 2), radius 2
    std = 0.05
    # 100 samples: 50 on mode 0, 48 on mode 1, 2 on mode 2 (2 % exactly), none elsewhere
    samples = torch.cat([centers[0].expand(50, 2), centers[1].expand(48, 2) + 0.1, centers[2].expand(2, 2)])
    assert mode_counts(samples, centers, std).tolist() == [50, 48, 2, 0, 0, 0, 0, 0]
    assert modes_covered(samples, centers, std) == 3
    assert modes_covered(samples, centers, std, min_frac=0.03) == 2
    # 3 std = 0.15: a point 0.14 from a centre counts, one 0.16 away does not
    assert modes_covered(centers[3].expand(10, 2) + torch.tensor([0.14, 0.0]), centers, std) == 1
    assert modes_covered(centers[3].expand(10, 2) + torch.tensor([0.16, 0.0]), centers, std) == 0
    # real ring data covers all 8 modes
    x, _ = toy_2d("ring", 2000, generator=torch.Generator().manual_seed(0))
    assert modes_covered(x, centers, std) == 8
    with pytest.raises(ValueError, match="centers"):
        modes_covered(torch.zeros(5, 3), centers, std)
    with pytest.raises(ValueError, match="min_frac"):
        modes_covered(samples, centers, std, min_frac=0)


def test_gradient_penalty_and_sampling_follow_the_model_s_dtype():
    D = MLPDiscriminator(GANConfig()).double()
    real, fake = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    assert gradient_penalty(D, real, fake).dtype == torch.float64
    assert MLPGenerator(GANConfig()).double().sample(3).dtype == torch.float64
