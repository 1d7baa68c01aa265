import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Binomial, Normal, kl_divergence

from aigc_helpers import set_seed
from aigc_helpers.vae import (VAE, VAEConfig, binomial_nll, gaussian_kl, make_vae_step, reparameterize,
                              vae_loss)


def small_config(**kw) -> VAEConfig:
    return VAEConfig(**{"image_size": 4, "hidden": 32, "latent_dim": 3, **kw})


# --------------------------------------------------------------------------- the KL term


def test_gaussian_kl_by_hand():
    # row 0: mu = 0, sigma = 1 in both dims -> KL = 0
    # row 1: dim 1 has mu = 1, sigma^2 = 1 -> 1/2 (1 + 1 - 0 - 1) = 1/2;
    #        dim 2 has mu = 0, sigma^2 = e -> 1/2 (0 + e - 1 - 1) = (e - 2) / 2
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (2,)
    assert kl[0].item() == 0.0
    assert kl[1].item() == pytest.approx(0.5 + (math.e - 2) / 2, abs=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)   # (5,)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)


def test_gaussian_kl_matches_monte_carlo():
    mu, logvar = torch.tensor([0.7, -1.2, 0.0]), torch.tensor([-0.5, 0.3, -2.0])
    q = Normal(mu, (0.5 * logvar).exp())
    eps = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1))
    z = mu + (0.5 * logvar).exp() * eps                                                # (S, 3) ~ q
    log_ratio = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1)                  # (S,)
    estimate, stderr = log_ratio.mean().item(), log_ratio.std().item() / math.sqrt(len(z))
    exact = gaussian_kl(mu[None], logvar[None]).item()
    assert abs(estimate - exact) < 4 * stderr
    assert stderr < 0.01


# --------------------------------------------------------------------------- reparameterisation


def test_reparameterize_has_the_right_mean_and_std():
    mu = torch.tensor([1.5, -2.0]).expand(100_000, 2)
    logvar = torch.tensor([0.25, 4.0]).log().expand(100_000, 2)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))                    # (100000, 2)
    assert torch.allclose(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0]), atol=0.02)


def test_reparameterize_lets_gradients_reach_mu_and_logvar():
    # E[z^2] = mu^2 + sigma^2, so d/dmu = 2 mu and d/dlogvar = sigma^2
    mu = torch.tensor([0.8, -0.3], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(0.5)], requires_grad=True)
    z = reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2), torch.Generator().manual_seed(0))
    z.pow(2).mean(0).sum().backward()
    assert torch.allclose(mu.grad, 2 * mu.detach(), atol=0.02)
    assert torch.allclose(logvar.grad, logvar.detach().exp(), atol=0.02)


def test_reparameterize_is_repeatable_with_a_generator():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    c = reparameterize(mu, logvar, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- the reconstruction term


def test_binomial_nll_by_hand_and_against_torch():
    # one pixel with k = 4 of 16 sub-pixels on and p = 1/4:
    # 16 * BCE = -16 (1/4 ln 1/4 + 3/4 ln 3/4), minus ln C(16, 4) = ln 1820
    x = torch.full((1, 1, 1, 1), 0.25)
    logit = torch.logit(torch.full((1, 1, 1, 1), 0.25))
    by_hand = -16 * (0.25 * math.log(0.25) + 0.75 * math.log(0.75)) - math.log(1820)
    assert binomial_nll(logit, x, trials=16).item() == pytest.approx(by_hand, abs=1e-4)

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 4, 4, generator=g)
    k = torch.randint(0, 17, (3, 1, 4, 4), generator=g).float()
    ref = -Binomial(16, logits=logits).log_prob(k).flatten(1).sum(1)                   # (3,)
    assert torch.allclose(binomial_nll(logits, k / 16, trials=16), ref, atol=1e-4)
    # trials = 1 is the Bernoulli likelihood: binary cross-entropy summed over pixels
    xs = torch.rand(3, 1, 4, 4, generator=g)
    bce = F.binary_cross_entropy(torch.sigmoid(logits), xs, reduction="none").flatten(1).sum(1)
    assert torch.allclose(binomial_nll(logits, xs), bce, atol=1e-4)


# --------------------------------------------------------------------------- the model and its loss


def test_elbo_terms_on_a_hand_made_model():
    # decoder outputs logit 0 (p = 1/2) everywhere: recon = 16 pixels * ln 2 whatever z is;
    # encoder outputs mu = 1, logvar = 0 in each of 3 dims: KL = 3 * 1/2
    model = VAE(small_config())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.encoder[-1].bias[:3] = 1.0
    x = torch.rand(5, 1, 4, 4)
    out = vae_loss(model, x, beta=4.0, n_samples=3)
    assert out.recon.item() == pytest.approx(16 * math.log(2), abs=1e-5)
    assert out.kl.item() == pytest.approx(1.5, abs=1e-6)
    assert out.loss.item() == pytest.approx(16 * math.log(2) + 4.0 * 1.5, abs=1e-5)
    assert out.elbo.item() == pytest.approx(-(16 * math.log(2) + 1.5), abs=1e-5)


def test_elbo_terms_match_the_formula_on_a_random_model():
    set_seed(0)
    model = VAE(small_config(pixel_trials=4, beta=0.5))
    x = torch.randint(0, 5, (6, 1, 4, 4)).float() / 4
    out = vae_loss(model, x, generator=torch.Generator().manual_seed(3))               # beta from the config
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    recon = binomial_nll(model.decode_logits(z), x, 4).mean()
    kl = gaussian_kl(mu, logvar).mean()
    assert torch.allclose(out.recon, recon) and torch.allclose(out.kl, kl)
    assert torch.allclose(out.loss, recon + 0.5 * kl) and torch.allclose(out.elbo, -(recon + kl))


def test_multi_sample_recon_averages_over_all_draws():
    """With n_samples=L, recon is the mean over L draws of z per image, drawn as L stacked batches."""
    set_seed(0)
    model = VAE(small_config())
    x = torch.rand(5, 1, 4, 4)
    out = vae_loss(model, x, n_samples=4, generator=torch.Generator().manual_seed(3))
    mu, logvar = model.encode(x)
    z = reparameterize(mu.repeat(4, 1), logvar.repeat(4, 1), torch.Generator().manual_seed(3))   # (4*5, d)
    nll = binomial_nll(model.decode_logits(z), x.repeat(4, 1, 1, 1), model.config.pixel_trials)  # (4*5,)
    per_draw = nll.view(4, 5).mean(1)                                   # (4,) one batch mean per draw
    assert per_draw.std() > 0.01                                        # the draws differ...
    assert torch.allclose(out.recon, per_draw.mean())                   # ...and all of them count


def test_sample_shape_range_and_determinism():
    set_seed(0)
    model = VAE(VAEConfig(in_channels=3, image_size=4, hidden=16, latent_dim=2))
    a = model.sample(5, generator=torch.Generator().manual_seed(0))
    b = model.sample(5, generator=torch.Generator().manual_seed(0))
    c = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 4, 4) and not a.requires_grad
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.rand(2, 3, 4, 4)
    mu, _ = model.encode(x)
    assert torch.equal(model.reconstruct(x), model.decode(mu))                       # through the mean


def test_a_vae_overfits_a_tiny_batch():
    set_seed(0)
    x = (torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    model = VAE(small_config(hidden=64, latent_dim=4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    step = make_vae_step(model, opt)
    first = step((x, torch.zeros(8)), 0)
    assert set(first) == {"loss", "recon", "kl"}
    for i in range(300):
        last = step((x, torch.zeros(8)), i)
    assert first["recon"] == pytest.approx(16 * math.log(2), rel=0.1)   # a fresh decoder guesses p ~ 1/2
    assert last["loss"] < 0.6 * first["loss"]
    assert last["recon"] < 0.35 * first["recon"]
    assert last["kl"] > 1.0                                             # the codes carry information


def test_bad_input_raises_value_error():
    model = VAE(small_config())
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        model.encode(torch.rand(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        model.encode(torch.rand(2, 3, 4, 4))                            # wrong channel count
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        model.encode(torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match="empty"):
        model.encode(torch.rand(0, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)
    with pytest.raises(ValueError, match="positive"):
        model.sample(-3)
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(4, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae_loss(model, torch.full((2, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="n_samples"):
        vae_loss(model, torch.rand(2, 1, 4, 4), n_samples=0)
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="trials"):
        binomial_nll(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), trials=0)
    with pytest.raises(ValueError, match="beta"):
        VAE(small_config(beta=-1.0))


def test_sampling_follows_the_model_s_dtype():
    assert VAE(VAEConfig()).double().sample(2).dtype == torch.float64
