import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from aigc_helpers.linear_gaussian import LinearGaussian, mvn_kl, mvn_log_prob
from aigc_helpers.mathcheck import normal_kl
from aigc_helpers.vae import gaussian_kl

F64 = torch.float64


def random_cov(*batch, n, g):
    A = torch.randn(*batch, n, n, generator=g, dtype=F64)
    return A @ A.transpose(-1, -2) + 0.3 * torch.eye(n, dtype=F64)


def model_and_data(d=5, k=3, sigma=0.7, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussian.random(d, k, sigma, generator=g)
    return model, model.sample(B, generator=g), g


def tiny():
    # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2), p(z | x) = N(x / 2, 1 / 2)
    return LinearGaussian(torch.tensor([[1.0]], dtype=F64), torch.tensor([0.0], dtype=F64), 1.0)


# --------------------------------------------------------------------------- Gaussian helpers


def test_mvn_log_prob_matches_torch_and_broadcasts():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(6, 4, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64)
    cov = random_cov(n=4, g=g)
    ref = MultivariateNormal(mean, cov).log_prob(x)
    assert torch.allclose(mvn_log_prob(x, mean, cov), ref, atol=1e-12)
    covs = random_cov(6, n=4, g=g)                                          # one covariance per row
    ref = MultivariateNormal(mean, covs).log_prob(x)
    assert torch.allclose(mvn_log_prob(x, mean, covs), ref, atol=1e-12)
    # a 1-D hand value: log N(2; 0, 2) = -1/2 log(4 pi) - 1
    assert mvn_log_prob(torch.tensor([2.0], dtype=F64), torch.zeros(1, dtype=F64),
                        torch.tensor([[2.0]], dtype=F64)).item() == pytest.approx(-0.5 * math.log(4 * math.pi) - 1)


def test_mvn_kl_matches_torch_and_the_diagonal_formulas():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    c1, c2 = random_cov(5, n=3, g=g), random_cov(5, n=3, g=g)
    ref = kl_divergence(MultivariateNormal(m1, c1), MultivariateNormal(m2, c2))
    assert torch.allclose(mvn_kl(m1, c1, m2, c2), ref, atol=1e-12)
    assert torch.allclose(mvn_kl(m1, c1, m1, c1), torch.zeros(5, dtype=F64), atol=1e-12)
    # diagonal covariances: the sum of the 1-D formula over coordinates
    v1, v2 = torch.rand(5, 3, generator=g, dtype=F64) + 0.1, torch.rand(5, 3, generator=g, dtype=F64) + 0.1
    diag = mvn_kl(m1, torch.diag_embed(v1), m2, torch.diag_embed(v2))
    assert torch.allclose(diag, normal_kl(m1, v1, m2, v2).sum(1), atol=1e-12)
    # against N(0, I): the VAE's closed form
    to_prior = mvn_kl(m1, torch.diag_embed(v1), torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    assert torch.allclose(to_prior, gaussian_kl(m1, v1.log()), atol=1e-12)


def test_gaussian_helpers_reject_bad_input():
    eye = torch.eye(3, dtype=F64)
    with pytest.raises(ValueError, match="agree in n"):
        mvn_log_prob(torch.zeros(2, 3, dtype=F64), torch.zeros(3, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="positive definite"):
        mvn_log_prob(torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64), -eye)
    with pytest.raises(ValueError, match="agree in n"):
        mvn_kl(torch.zeros(3, dtype=F64), eye, torch.zeros(2, dtype=F64), eye)
    with pytest.raises(ValueError, match="positive definite"):
        mvn_kl(torch.zeros(3, dtype=F64), eye, torch.zeros(3, dtype=F64), eye - 2 * torch.diag(torch.ones(3, dtype=F64)))


# --------------------------------------------------------------------------- the model


def test_tiny_model_by_hand():
    model, x = tiny(), torch.tensor([[2.0]], dtype=F64)
    assert model.log_prob(x).item() == pytest.approx(-0.5 * math.log(4 * math.pi) - 1.0, abs=1e-12)
    mean, cov = model.posterior(x)
    assert mean.item() == pytest.approx(1.0) and cov.item() == pytest.approx(0.5)
    # q = the prior N(0, 1): ELBO = E[log N(2; z, 1)] = -1/2 log(2 pi) - (4 + 1) / 2
    elbo = model.elbo(x, torch.zeros(1, 1, dtype=F64), torch.eye(1, dtype=F64)).item()
    assert elbo == pytest.approx(-0.5 * math.log(2 * math.pi) - 2.5, abs=1e-12)
    # the gap is KL(N(0, 1) || N(1, 1/2)) = 1/2 (log 1/2 + 2 / (1/2) - 1)
    assert model.log_prob(x).item() - elbo == pytest.approx(0.5 * (math.log(0.5) + 4 - 1), abs=1e-12)


def test_marginal_matches_torch_and_samples():
    model, x, g = model_and_data()
    mean, cov = model.marginal()
    assert torch.allclose(model.log_prob(x), MultivariateNormal(mean, cov).log_prob(x), atol=1e-12)
    xs, zs = model.sample(200_000, generator=g, return_latents=True)
    assert xs.shape == (200_000, 5) and zs.shape == (200_000, 3) and xs.dtype == F64
    emp_cov = torch.cov(xs.T)
    # standard error of a covariance entry is about sqrt((C_ii C_jj + C_ij^2) / n)
    se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov ** 2) / len(xs)).sqrt()
    assert ((emp_cov - cov).abs() < 5 * se).all()
    assert ((xs.mean(0) - mean).abs() < 5 * (cov.diagonal() / len(xs)).sqrt()).all()
    # x - W z - b is the observation noise: variance sigma^2 in every coordinate, independent of z
    noise = xs - zs @ model.W.T - model.b
    assert noise.var(0).sub(model.sigma ** 2).abs().max() < 0.01


def test_posterior_by_bayes_rule_and_by_conditioning_the_joint_gaussian():
    model, x, g = model_and_data()
    mean, cov = model.posterior(x)
    assert mean.shape == (4, 3) and cov.shape == (3, 3)
    # Bayes: log p(z|x) = log p(x, z) - log p(x) at any z
    z = torch.randn(7, 4, 3, generator=g, dtype=F64)
    gap = model.log_joint(x, z) - model.log_prob(x) - mvn_log_prob(z, mean, cov)
    assert gap.abs().max() < 1e-10
    # conditioning the joint Gaussian of (z, x): mean W^T C^{-1} (x - b), cov I - W^T C^{-1} W
    _, C = model.marginal()
    gain = torch.linalg.solve(C, model.W).T                                 # W^T C^{-1}, (k, d)
    assert torch.allclose(mean, (x - model.b) @ gain.T, atol=1e-10)
    assert torch.allclose(cov, torch.eye(3, dtype=F64) - gain @ model.W, atol=1e-10)


def test_elbo_identity_and_monte_carlo():
    model, x, g = model_and_data(seed=2)
    post_mean, post_cov = model.posterior(x)
    q_mean, q_cov = torch.randn(4, 3, generator=g, dtype=F64), random_cov(4, n=3, g=g)
    elbo = model.elbo(x, q_mean, q_cov)
    assert elbo.shape == (4,)
    # log p(x) = ELBO + KL(q || posterior), to float64 precision, and the gap closes at the posterior
    assert torch.allclose(elbo + mvn_kl(q_mean, q_cov, post_mean, post_cov), model.log_prob(x), atol=1e-10)
    assert torch.allclose(model.elbo(x, post_mean, post_cov), model.log_prob(x), atol=1e-10)
    assert (elbo < model.log_prob(x)).all()
    # Monte Carlo: E_q[log p(x, z) - log q(z)], and the reconstruction term alone
    S = 100_000
    eps = torch.randn(S, 4, 3, generator=g, dtype=F64)
    z = q_mean + torch.einsum("bij,sbj->sbi", torch.linalg.cholesky(q_cov), eps)   # (S, B, k) ~ q
    terms = model.log_joint(x, z) - mvn_log_prob(z, q_mean, q_cov)          # (S, B)
    se = terms.std(0) / math.sqrt(S)
    assert ((terms.mean(0) - elbo).abs() < 4 * se).all()
    recon = model.log_likelihood(x, z)
    se = recon.std(0) / math.sqrt(S)
    assert ((recon.mean(0) - model.expected_log_likelihood(x, q_mean, q_cov)).abs() < 4 * se).all()
    # one shared covariance gives the same as the same covariance per row
    shared = model.elbo(x, q_mean, q_cov[0])
    assert torch.allclose(shared, model.elbo(x, q_mean, q_cov[0].expand(4, 3, 3)), atol=1e-12)


def test_model_rejects_bad_input():
    with pytest.raises(ValueError, match="W must be a matrix"):
        LinearGaussian(torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="b must have shape"):
        LinearGaussian(torch.zeros(3, 2, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="sigma must be positive"):
        LinearGaussian(torch.zeros(3, 2, dtype=F64), torch.zeros(3, dtype=F64), sigma=0.0)
    model, x, _ = model_and_data()
    with pytest.raises(ValueError, match=r"observations of shape \(B, 5\)"):
        model.log_prob(torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"latents of shape \(\.\.\., 3\)"):
        model.log_joint(x, torch.zeros(4, 2, dtype=F64))
    with pytest.raises(ValueError, match="covariance of shape"):
        model.elbo(x, torch.zeros(4, 3, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="positive int"):
        model.sample(0)
