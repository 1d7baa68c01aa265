import math

import pytest
import torch
from torch import distributions as D

from aigc_helpers.diffusion import DDPM, DDPMConfig, NoiseSchedule
from aigc_helpers.mixture import GaussianMixture, OptimalDenoiser

LINE = dict(weights=[0.3, 0.5, 0.2], means=[-2.0, 0.0, 1.5], stds=[0.25, 0.4, 0.15])
PLANE = dict(weights=[0.1, 0.2, 0.3, 0.4], means=[[-1.0, 0.5], [1.0, 1.0], [0.0, -1.0], [2.0, -0.5]],
             stds=[[0.3, 0.5], [0.2, 0.2], [0.6, 0.3], [0.4, 0.25]])


def torch_mixture(mix: GaussianMixture, alpha_bar: float = 1.0) -> D.MixtureSameFamily:
    """The same mixture (noised to alpha_bar) built from torch.distributions, written out independently."""
    ab = torch.tensor(alpha_bar, dtype=torch.float64)
    means = ab.sqrt() * mix.means
    stds = (ab * mix.stds ** 2 + 1 - ab).sqrt()
    return D.MixtureSameFamily(D.Categorical(mix.weights), D.Independent(D.Normal(means, stds), 1))


@pytest.fixture(params=["line", "plane"])
def mix(request):
    return GaussianMixture(**(LINE if request.param == "line" else PLANE))


# --------------------------------------------------------------------------- the mixture itself


def test_shapes_and_broadcasting_of_stds():
    m = GaussianMixture([0.5, 0.5], [[0.0, 1.0], [2.0, 3.0]], 0.3)
    assert (m.n_components, m.dim) == (2, 2) and m.stds.shape == (2, 2) and (m.stds == 0.3).all()
    m = GaussianMixture([0.5, 0.5], [[0.0, 1.0], [2.0, 3.0]], [0.1, 0.2])
    assert torch.equal(m.stds, torch.tensor([[0.1, 0.1], [0.2, 0.2]], dtype=torch.float64))
    line = GaussianMixture(**LINE)
    x = torch.zeros(5)
    assert line.log_prob(x).shape == (5,) and line.score(x).shape == (5,) and line.score(x[:, None]).shape == (5, 1)


@pytest.mark.parametrize("alpha_bar", [1.0, 0.7, 0.05, 0.0])
def test_log_prob_matches_torch_distributions(mix, alpha_bar):
    x = torch.randn(50, mix.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    ours = mix.log_prob(x, None if alpha_bar == 1.0 else alpha_bar)
    assert torch.allclose(ours, torch_mixture(mix, alpha_bar).log_prob(x), atol=1e-12)
    assert torch.allclose(mix.diffuse(alpha_bar).log_prob(x), ours, atol=1e-12)


def test_density_integrates_to_one_and_cdf_is_its_integral():
    m = GaussianMixture(**LINE)
    grid = torch.linspace(-6, 6, 60_001, dtype=torch.float64)
    p = m.log_prob(grid).exp()
    assert torch.trapezoid(p, grid).item() == pytest.approx(1.0, abs=1e-10)
    integral = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(p, grid)])
    assert torch.allclose(m.cdf(grid), integral, atol=1e-8)
    by_torch = sum(w * D.Normal(mu, s).cdf(grid) for w, mu, s in zip(m.weights, m.means[:, 0], m.stds[:, 0]))
    assert torch.allclose(m.cdf(grid, 0.3), (m.diffuse(0.3).cdf(grid)), atol=1e-14)
    assert torch.allclose(m.cdf(grid), by_torch, atol=1e-14)


def test_sample_has_the_mixture_moments_and_weights(mix):
    n = 200_000
    x, labels = mix.sample(n, torch.Generator().manual_seed(1), return_labels=True)
    assert x.shape == (n, mix.dim) and x.dtype == torch.float64
    share = torch.bincount(labels, minlength=mix.n_components) / n
    assert (share - mix.weights).abs().max() < 4 * math.sqrt(0.25 / n)
    mean = (mix.weights[:, None] * mix.means).sum(0)
    second = (mix.weights[:, None] * (mix.stds ** 2 + mix.means ** 2)).sum(0)
    var = second - mean ** 2
    assert ((x.mean(0) - mean).abs() < 4 * (var / n).sqrt()).all()
    assert ((x.var(0) / var - 1).abs() < 0.02).all()
    for k in range(mix.n_components):                                # each component has its own spread
        assert torch.allclose(x[labels == k].std(0), mix.stds[k], rtol=0.05)


def test_responsibilities_are_bayes_rule(mix):
    x = torch.randn(20, mix.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    comp = D.Independent(D.Normal(mix.means, mix.stds), 1)
    joint = mix.weights * comp.log_prob(x[:, None, :]).exp()         # (20, K)
    assert torch.allclose(mix.responsibilities(x), joint / joint.sum(1, keepdim=True), atol=1e-12)


@pytest.mark.parametrize("alpha_bar", [None, 0.9, 0.2])
def test_score_is_the_gradient_of_the_log_density(mix, alpha_bar):
    x = torch.randn(30, mix.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    auto = x.clone().requires_grad_()
    torch_mixture(mix, 1.0 if alpha_bar is None else alpha_bar).log_prob(auto).sum().backward()
    assert torch.allclose(mix.score(x, alpha_bar), auto.grad, atol=1e-10)


def test_per_point_alpha_bar_matches_one_at_a_time(mix):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, mix.dim, dtype=torch.float64, generator=g)
    ab = torch.rand(6, dtype=torch.float64, generator=g)
    together = mix.score(x, ab)
    alone = torch.cat([mix.score(x[i:i + 1], ab[i].item()) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-14)
    assert torch.allclose(mix.log_prob(x, ab), torch.cat([mix.log_prob(x[i:i + 1], ab[i]) for i in range(6)]))


# --------------------------------------------------------------------------- the diffusion


def test_diffuse_matches_noising_samples():
    m = GaussianMixture(**LINE)
    g = torch.Generator().manual_seed(5)
    n, ab = 200_000, 0.4
    xt = math.sqrt(ab) * m.sample(n, g) + math.sqrt(1 - ab) * torch.randn(n, 1, dtype=torch.float64, generator=g)
    exact = m.diffuse(ab).sample(n, g)
    assert m.wasserstein_1d(xt, ab) < 0.01 and m.wasserstein_1d(exact, ab) < 0.01
    assert m.wasserstein_1d(xt, 0.5) > 0.02                           # the wrong noise level is seen


def test_optimal_eps_is_the_conditional_mean_of_the_noise():
    m = GaussianMixture(**LINE)
    g = torch.Generator().manual_seed(6)
    n, ab = 400_000, 0.5
    eps = torch.randn(n, 1, dtype=torch.float64, generator=g)
    xt = math.sqrt(ab) * m.sample(n, g) + math.sqrt(1 - ab) * eps
    best = m.optimal_eps(xt, ab)
    # E[(eps - eps*) h(x_t)] = 0 for any h: check a few, within 4 standard errors
    for h in (torch.ones_like(xt), xt, torch.sin(3 * xt), torch.tanh(xt - 1.5)):
        prod = (eps - best) * h
        assert abs(prod.mean().item()) < 4 * prod.std().item() / math.sqrt(n)
    # and it beats a nearby function
    assert ((eps - best) ** 2).mean() < ((eps - 1.05 * best) ** 2).mean()


def test_optimal_eps_mean_x0_and_the_forward_jump_agree(mix):
    """x_t = sqrt(ab) E[x_0 | x_t] + sqrt(1 - ab) E[eps | x_t]: two independent code paths."""
    g = torch.Generator().manual_seed(7)
    for ab in (0.999, 0.5, 0.01):
        xt = mix.diffuse(ab).sample(200, g)
        lhs = math.sqrt(ab) * mix.mean_x0(xt, ab) + math.sqrt(1 - ab) * mix.optimal_eps(xt, ab)
        assert torch.allclose(lhs, xt, atol=1e-10)


def test_mean_x0_of_a_single_gaussian_is_the_textbook_formula():
    m = GaussianMixture([1.0], [0.7], [0.5])
    xt = torch.linspace(-3, 3, 7, dtype=torch.float64)
    ab = 0.6
    gain = math.sqrt(ab) * 0.25 / (ab * 0.25 + 1 - ab)
    assert torch.allclose(m.mean_x0(xt, ab), 0.7 + gain * (xt - math.sqrt(ab) * 0.7), atol=1e-14)
    assert torch.allclose(m.mean_x0(xt[:, None], 1.0)[:, 0], xt, atol=1e-14)   # no noise: x_0 = x_t


# --------------------------------------------------------------------------- one dimension


def test_wasserstein_1d_known_values():
    normal = GaussianMixture([1.0], [0.0], [1.0])
    assert normal.wasserstein_1d(torch.zeros(10)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-6)
    q = torch.special.ndtri((torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000)   # quantiles of N(0, 1)
    assert normal.wasserstein_1d(q) < 1e-3
    assert normal.wasserstein_1d(q + 0.3) == pytest.approx(0.3, abs=1e-3)
    assert normal.wasserstein_1d(2 * q) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-3)   # E|X| for a scale of 2


def test_wasserstein_1d_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    m = GaussianMixture(**LINE)
    g = torch.Generator().manual_seed(8)
    x = 1.1 * m.sample(3000, g)[:, 0]
    ref = m.sample(1_000_000, g)[:, 0]
    assert m.wasserstein_1d(x) == pytest.approx(stats.wasserstein_distance(x.numpy(), ref.numpy()), abs=3e-3)


# --------------------------------------------------------------------------- the denoiser in the samplers


def test_optimal_denoiser_is_optimal_eps_at_the_schedule_step(mix):
    s = NoiseSchedule.cosine(50)
    net = OptimalDenoiser(mix, s.alpha_bars)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(16, mix.dim, generator=g)
    t = torch.randint(0, 50, (16,), generator=g)
    out = net(x, t)
    assert out.dtype == x.dtype and out.shape == x.shape
    expected = torch.stack([mix.optimal_eps(x[i:i + 1].double(), s.alpha_bars[t[i]].item())[0] for i in range(16)])
    assert torch.allclose(out.double(), expected, atol=1e-6)
    assert sum(p.numel() for p in net.parameters()) == 0


def test_perfect_network_in_ddim_converges_to_the_data():
    m = GaussianMixture(**LINE)
    T = 200
    model = DDPM(OptimalDenoiser(m, NoiseSchedule.cosine(T).alpha_bars), (1,), DDPMConfig(T=T, images=False))
    q = torch.special.ndtri((torch.arange(2000, dtype=torch.float64) + 0.5) / 2000)[:, None]
    w = [m.wasserstein_1d(model.sample_ddim(2000, steps, x_T=q)) for steps in (10, 40, 200)]
    assert w[0] / w[1] > 3 and w[1] / w[2] > 3.5 and w[2] < 0.01           # first order: 4x and 5x the steps


def test_perfect_network_in_ddpm_reproduces_the_modes():
    m = GaussianMixture(**PLANE)
    T = 100
    model = DDPM(OptimalDenoiser(m, NoiseSchedule.cosine(T).alpha_bars), (2,), DDPMConfig(T=T, images=False))
    x = model.sample(4000, generator=torch.Generator().manual_seed(10))
    share = torch.bincount(m.responsibilities(x).argmax(1), minlength=4) / len(x)
    exact = m.sample(40_000, torch.Generator().manual_seed(11))
    share_exact = torch.bincount(m.responsibilities(exact).argmax(1), minlength=4) / len(exact)
    assert (share - share_exact).abs().max() < 0.03
    assert torch.allclose(x.double().mean(0), exact.mean(0), atol=0.06)


# --------------------------------------------------------------------------- errors


def test_clear_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([0.5, 0.6], [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture([0.5, 0.5], [0.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match=r"\(K,\)"):
        GaussianMixture([0.5, 0.5], [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="stds must be"):
        GaussianMixture([0.5, 0.5], [[0.0, 1.0], [1.0, 2.0]], [[1.0, 1.0, 1.0]])
    line, plane = GaussianMixture(**LINE), GaussianMixture(**PLANE)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plane.log_prob(torch.zeros(5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        line.score(torch.zeros(3), 1.5)
    with pytest.raises(ValueError, match="one value per point"):
        line.score(torch.zeros(3), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="on a line"):
        plane.cdf(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="at least 1"):
        line.sample(0)
    net = OptimalDenoiser(line, NoiseSchedule.cosine(10).alpha_bars)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        net(torch.zeros(2, 1), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        net(torch.zeros(2, 2), torch.tensor([0, 1]))
