import math

import pytest
import torch

from aigc_helpers.divergences import (gan_value, js_divergence, kl_divergence, normal_w1, optimal_critic_1d,
                                      optimal_discriminator, optimal_discriminator_logit, tv_distance,
                                      wasserstein1_1d, wasserstein1_cdf)
from aigc_helpers.gan import gan_d_loss
from aigc_helpers.mathcheck import normal_kl

F64 = torch.float64


@pytest.fixture(autouse=True)
def float64():
    # checks in double precision; the default is restored for the other test modules
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


XS = torch.linspace(-30, 30, 60001, dtype=F64)                       # grid for densities, spacing 0.001
DX = (XS[1] - XS[0]).item()


def normal_logpdf(mean, std, xs=XS):
    return torch.distributions.Normal(torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64)).log_prob(xs)


def normal_pdf(mean, std, xs=XS):
    return normal_logpdf(mean, std, xs).exp()


def random_probs(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=F64), -1)


def test_kl_matches_torch_distributions_and_hand_values():
    p, q = random_probs(50, 7, seed=0), random_probs(50, 7, seed=1)
    cat = torch.distributions.Categorical
    expected = torch.distributions.kl_divergence(cat(probs=p), cat(probs=q))
    assert torch.allclose(kl_divergence(p, q), expected, atol=1e-12)
    # by hand: p = (1/2, 1/2), q = (1/4, 3/4)
    hand = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])).item() == pytest.approx(hand, abs=1e-12)
    assert not torch.allclose(kl_divergence(p, q), kl_divergence(q, p))          # not symmetric
    assert torch.allclose(kl_divergence(p, p), torch.zeros(50, dtype=F64), atol=1e-15)


def test_kl_conventions_zero_mass_and_missing_support():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=F64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=F64)
    assert kl_divergence(p, q).item() == pytest.approx(math.log(2), abs=1e-15)    # 0 log 0 = 0
    assert kl_divergence(q, p).item() == math.inf                                 # q has mass where p has none
    # no NaN gradients from the zero entry
    p_var = p.clone().requires_grad_()
    kl_divergence(p_var, q).backward()
    assert torch.isfinite(p_var.grad).all()


def test_kl_on_a_grid_matches_the_gaussian_closed_form():
    xs = torch.linspace(-12, 12, 24001, dtype=F64)                 # wide enough, and no density underflows to 0
    for (m1, s1, m2, s2) in [(0.0, 1.0, 1.0, 0.5), (1.0, 0.5, 0.0, 1.0), (-1.0, 1.5, 1.0, 1.0)]:
        grid = kl_divergence(normal_pdf(m1, s1, xs), normal_pdf(m2, s2, xs), DX).item()
        assert grid == pytest.approx(normal_kl(m1, s1 ** 2, m2, s2 ** 2).item(), abs=1e-9)


def test_js_definition_symmetry_and_bounds():
    p, q = random_probs(100, 6, seed=2), random_probs(100, 6, seed=3)
    m = (p + q) / 2
    by_definition = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
    js = js_divergence(p, q)
    assert torch.allclose(js, by_definition, atol=1e-14)
    assert torch.allclose(js, js_divergence(q, p), atol=1e-15)
    assert (js >= 0).all() and (js <= math.log(2)).all()
    disjoint = js_divergence(torch.tensor([0.3, 0.7, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.6, 0.4]))
    assert disjoint.item() == pytest.approx(math.log(2), abs=1e-15)
    assert js_divergence(p, p).abs().max() < 1e-15
    # densities that round to 0 in the far tails: JS stays finite (KL would not) and is log 2 for far-apart bumps
    far = js_divergence(normal_pdf(-8.0, 0.1), normal_pdf(8.0, 0.1), DX).item()
    assert far == pytest.approx(math.log(2), abs=1e-6)


def test_js_on_a_grid_against_monte_carlo():
    a = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    b = torch.distributions.Normal(torch.tensor(1.5, dtype=F64), torch.tensor(0.7, dtype=F64))
    g = torch.Generator().manual_seed(0)
    n = 400_000
    xa = torch.randn(n, generator=g, dtype=F64)
    xb = 1.5 + 0.7 * torch.randn(n, generator=g, dtype=F64)
    log_m = lambda x: torch.logaddexp(a.log_prob(x), b.log_prob(x)) - math.log(2)
    ta, tb = a.log_prob(xa) - log_m(xa), b.log_prob(xb) - log_m(xb)
    mc = 0.5 * ta.mean() + 0.5 * tb.mean()
    se = 0.5 * math.sqrt(ta.var() / n + tb.var() / n)
    grid = js_divergence(normal_pdf(0.0, 1.0), normal_pdf(1.5, 0.7), DX)
    assert abs(grid - mc) < 4 * se


def test_tv_by_hand_closed_form_and_pinsker():
    assert tv_distance(torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.8])).item() == pytest.approx(0.3, abs=1e-15)
    assert tv_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == 1.0
    # equal widths: TV = 2 Phi(|mu1 - mu2| / (2 sigma)) - 1
    for delta in (0.3, 1.0, 2.5):
        exact = 2 * torch.special.ndtr(torch.tensor(delta / 2, dtype=F64)).item() - 1
        assert tv_distance(normal_pdf(0.0, 1.0), normal_pdf(delta, 1.0), DX).item() == pytest.approx(exact, abs=1e-6)
    p, q = random_probs(500, 5, seed=4), random_probs(500, 5, seed=5)
    assert (tv_distance(p, q) <= (kl_divergence(p, q) / 2).sqrt()).all()


def test_optimal_discriminator_maximises_the_integrand_pointwise():
    g = torch.Generator().manual_seed(6)
    a, b = torch.rand(50, generator=g, dtype=F64) + 0.01, torch.rand(50, generator=g, dtype=F64) + 0.01
    ys = torch.linspace(1e-5, 1 - 1e-5, 100_001, dtype=F64)
    h = a[:, None] * ys.log() + b[:, None] * (1 - ys).log()                       # (50, 100001)
    d_star = optimal_discriminator(a, b)
    assert (ys[h.argmax(1)] - d_star).abs().max() <= 1e-5
    assert torch.allclose(d_star, a / (a + b), atol=1e-15)
    both_zero = optimal_discriminator(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 2.0]))
    assert both_zero.tolist() == [0.5, 1.0, 0.0]
    logit = optimal_discriminator_logit(torch.log(a), torch.log(b))
    assert torch.allclose(torch.sigmoid(logit), d_star, atol=1e-14)


def test_gan_value_at_the_optimum_is_two_js_minus_log_4():
    p, q = normal_pdf(-1.0, 0.6), normal_pdf(1.0, 0.8)
    logit = optimal_discriminator_logit(normal_logpdf(-1.0, 0.6), normal_logpdf(1.0, 0.8))
    v_star = gan_value(logit, p, q, DX)
    assert v_star.item() == pytest.approx(2 * js_divergence(p, q, DX).item() - math.log(4), abs=1e-10)
    # any other discriminator does worse, and D = 1/2 everywhere gives -log 4
    assert gan_value(logit + 0.3, p, q, DX) < v_star and gan_value(0.5 * logit, p, q, DX) < v_star
    assert gan_value(torch.zeros_like(p), p, q, DX).item() == pytest.approx(-math.log(4), abs=1e-10)
    # equal distributions: -log 4 exactly at D* = 1/2
    assert gan_value(torch.zeros_like(p), p, p, DX).item() == pytest.approx(-math.log(4), abs=1e-10)
    # disjoint supports with infinite logits: 0 log 0 = 0, value 2 log 2 - log 4 = 0
    pd, pg = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5, 0.5])
    inf_logit = torch.tensor([math.inf, math.inf, -math.inf, -math.inf])
    assert gan_value(inf_logit, pd, pg).item() == 0.0


def test_gan_value_is_minus_the_expected_gan_d_loss():
    # discrete distributions: gan_d_loss on a "sample" that holds each atom in proportion to its mass
    pd = torch.tensor([0.25, 0.5, 0.25], dtype=F64)
    pg = torch.tensor([0.5, 0.25, 0.25], dtype=F64)
    logit = torch.tensor([1.0, -0.5, 0.2], dtype=F64)
    real = logit[torch.tensor([0, 1, 1, 2])]
    fake = logit[torch.tensor([0, 0, 1, 2])]
    assert gan_value(logit, pd, pg).item() == pytest.approx(-gan_d_loss(real, fake).item(), abs=1e-14)


def test_wasserstein1_1d_against_sorting_assignment_and_scipy():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(200, generator=g, dtype=F64), 0.5 * torch.randn(200, generator=g, dtype=F64) + 1
    w = wasserstein1_1d(x, y).item()
    assert w == pytest.approx((x.sort().values - y.sort().values).abs().mean().item(), abs=1e-12)
    assert w == pytest.approx(wasserstein1_1d(y, x).item(), abs=1e-12)
    assert wasserstein1_1d(x, x + 0.7).item() == pytest.approx(0.7, abs=1e-12)
    scipy_opt = pytest.importorskip("scipy.optimize")
    cost = (x[:, None] - y[None, :]).abs().numpy()
    r, c = scipy_opt.linear_sum_assignment(cost)
    assert w == pytest.approx(cost[r, c].mean(), abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    z = 2 * torch.randn(37, generator=g, dtype=F64)                                # unequal sizes
    assert wasserstein1_1d(x, z).item() == pytest.approx(scipy_stats.wasserstein_distance(x.numpy(), z.numpy()),
                                                        abs=1e-12)


def test_wasserstein1_1d_with_unequal_sizes_by_replication():
    x = torch.tensor([0.0, 1.0, 5.0], dtype=F64)
    y = torch.tensor([2.0, -1.0], dtype=F64)
    # replicate to 6 equal-weight atoms each, then match in order
    xr, yr = x.repeat_interleave(2), y.repeat_interleave(3)
    expected = (xr.sort().values - yr.sort().values).abs().mean().item()
    assert wasserstein1_1d(x, y).item() == pytest.approx(expected, abs=1e-14)


def test_w1_from_cdfs_and_the_gaussian_closed_form():
    for (m1, s1, m2, s2) in [(2.0, 0.5, 0.0, 2.0), (0.0, 1.0, 0.0, 3.0), (1.0, 1.0, -1.0, 1.0), (0.0, 0.2, 3.0, 0.1)]:
        cdf = lambda m, s: torch.special.ndtr((XS - m) / s)
        grid = wasserstein1_cdf(cdf(m1, s1), cdf(m2, s2), DX).item()
        assert normal_w1(m1, s1, m2, s2).item() == pytest.approx(grid, abs=1e-7)
    assert normal_w1(0.0, 1.0, 0.0, 3.0).item() == pytest.approx(2 * math.sqrt(2 / math.pi), abs=1e-12)
    assert normal_w1(1.0, 1.0, -1.0, 1.0).item() == pytest.approx(2.0, abs=1e-12)
    g = torch.Generator().manual_seed(8)
    a = 2.0 + 0.5 * torch.randn(200_000, generator=g, dtype=F64)
    b = 2.0 * torch.randn(200_000, generator=g, dtype=F64)
    assert wasserstein1_1d(a, b).item() == pytest.approx(normal_w1(2.0, 0.5, 0.0, 2.0).item(), abs=0.02)


def test_optimal_critic_1d_attains_w1_and_is_1_lipschitz():
    g = torch.Generator().manual_seed(9)
    real, fake = 2 + 0.5 * torch.randn(150, generator=g, dtype=F64), 2 * torch.randn(120, generator=g, dtype=F64)
    gap = optimal_critic_1d(real, fake, real).mean() - optimal_critic_1d(real, fake, fake).mean()
    assert gap.item() == pytest.approx(wasserstein1_1d(real, fake).item(), abs=1e-12)
    t = torch.linspace(-10, 10, 20001, dtype=F64)
    f = optimal_critic_1d(real, fake, t)
    assert ((f[1:] - f[:-1]).abs() / (t[1] - t[0])).max() <= 1 + 1e-9
    assert f[0] == f[1] and f[-1] == f[-2]                                          # flat outside the samples
    # point masses at 0 (real) and 3 (fake): f falls at slope 1 from the real to the fake point
    f_pm = optimal_critic_1d(torch.zeros(4, dtype=F64), torch.full((4,), 3.0, dtype=F64),
                             torch.tensor([0.0, 1.0, 3.0], dtype=F64))
    assert f_pm.tolist() == pytest.approx([0.0, -1.0, -3.0])
    # autograd gives the slope: +-1 between the samples
    x_hat = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    (slope,) = torch.autograd.grad(optimal_critic_1d(torch.zeros(4, dtype=F64), torch.full((4,), 3.0, dtype=F64),
                                                     x_hat).sum(), x_hat)
    assert slope.tolist() == [-1.0, -1.0]


def test_bad_inputs_raise_clear_errors():
    p = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(p, torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence(p, torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match="dx"):
        tv_distance(p, p, dx=0.0)
    with pytest.raises(ValueError, match="logits"):
        gan_value(torch.zeros(3), p, p)
    with pytest.raises(ValueError, match="1-D tensor"):
        wasserstein1_1d(torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        wasserstein1_1d(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="positive standard deviations"):
        normal_w1(0.0, -1.0, 0.0, 1.0)


def test_normal_w1_keeps_float64_precision():
    torch.set_default_dtype(torch.float32)          # the usual default (this module's fixture restores its own)
    d = torch.tensor(1.0, dtype=torch.float64)
    w = normal_w1(torch.tensor(1e8 + 1, dtype=torch.float64), d, torch.tensor(1e8, dtype=torch.float64), d)
    assert w.dtype == torch.float64 and w.item() == 1.0
