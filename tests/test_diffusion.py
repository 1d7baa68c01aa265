import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc_helpers import set_seed
from aigc_helpers.diffusion import DDPM, DDPMConfig, NoiseSchedule, cosine_betas, ddpm_loss_fn, linear_betas
from aigc_helpers.train import train
from aigc_helpers.unet import MLPDenoiser

# --------------------------------------------------------------------------- schedules


def test_linear_betas_match_ho_et_al_at_t_1000_and_rescale():
    b = linear_betas(1000)
    assert b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert (b.diff() > 0).all()
    b100 = linear_betas(100)
    assert b100[0].item() == pytest.approx(1e-3) and b100[-1].item() == pytest.approx(0.2)


def test_cosine_betas_give_the_cosine_alpha_bar():
    T, s = 50, 0.008
    ab = torch.cumprod(1 - cosine_betas(T, s).double(), 0)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2   # noqa: E731
    for t in (1, 10, 25, 40):
        assert ab[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-5)
    assert (cosine_betas(T) <= 0.999).all()


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine])
def test_schedules_end_in_noise(make):
    s = make(100)
    assert s.T == 100
    assert s.alpha_bars[0] > 0.99 and s.alpha_bars[-1] < 1e-3
    assert (s.alpha_bars.diff() < 0).all()
    assert s.alpha_bars_prev[0] == 1.0 and torch.equal(s.alpha_bars_prev[1:], s.alpha_bars[:-1])


def test_schedule_rejects_bad_betas_and_steps():
    with pytest.raises(ValueError, match="between 0 and 1"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule(torch.zeros(2, 2) + 0.1)
    with pytest.raises(ValueError, match="at least 1"):
        linear_betas(0)
    s = NoiseSchedule.cosine(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        s.q_sample(x, torch.tensor([0, 5, 10]), x)
    with pytest.raises(ValueError, match="one step per example"):
        s.q_sample(x, torch.tensor([0, 1]), x)


# --------------------------------------------------------------------------- forward process


def test_closed_form_equals_the_chain_with_matching_noise():
    # With the chain's noises combined as the closed form says, the two agree exactly:
    # x_t = sqrt(ab_t) x0 + sum_s sqrt(beta_s) * prod_{r>s} sqrt(alpha_r) * eps_s, whose variance is 1 - ab_t.
    s = NoiseSchedule.cosine(20)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, generator=g)
    eps = torch.randn(20, 4, 3, generator=g)
    x = x0
    for t in range(20):
        x = s.q_step(x, t, eps[t])
    weights = torch.stack([s.betas[t].sqrt() * s.alphas[t + 1:].prod().sqrt() for t in range(20)])   # (20,)
    combined = (weights[:, None, None] * eps).sum(0) / (1 - s.alpha_bars[-1]).sqrt()
    assert weights.pow(2).sum().item() == pytest.approx(1 - s.alpha_bars[-1].item(), rel=1e-4)
    assert torch.allclose(s.q_sample(x0, 19, combined), x, atol=1e-5)


def test_closed_form_statistics():
    s = NoiseSchedule(torch.tensor([0.1, 0.2, 0.3]))
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x0 = torch.full((n,), 2.0)
    xt = s.q_sample(x0, 2, torch.randn(n, generator=g))
    ab = 0.9 * 0.8 * 0.7
    assert xt.mean().item() == pytest.approx(2 * math.sqrt(ab), abs=4 * math.sqrt((1 - ab) / n))
    assert xt.var().item() == pytest.approx(1 - ab, abs=4 * (1 - ab) * math.sqrt(2 / n))


def test_predict_x0_inverts_q_sample():
    s = NoiseSchedule.linear(30)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 3, 9, 15, 22, 29])
    xt = s.q_sample(x0, t, eps)
    assert torch.allclose(s.predict_x0(xt, t, eps), x0, atol=1e-3)


# --------------------------------------------------------------------------- posterior


def test_posterior_is_the_product_of_the_two_gaussians():
    s = NoiseSchedule.cosine(40)
    t = torch.arange(1, 40)
    a, b, abp = s.alphas[t].double(), s.betas[t].double(), s.alpha_bars_prev[t].double()
    xt, x0 = 0.4, -1.1
    var = 1 / (a / b + 1 / (1 - abp))
    mean = var * (a.sqrt() / b * xt + abp.sqrt() / (1 - abp) * x0)
    m, v = s.posterior(torch.full((39,), x0), torch.full((39,), xt), t)
    assert torch.allclose(m.double(), mean, atol=1e-5)
    assert torch.allclose(v.double(), var, rtol=1e-4)


def test_posterior_by_monte_carlo():
    # Draw (x_{t-1}, x_t) from the forward process started at a fixed x0; regress x_{t-1} on x_t.
    s = NoiseSchedule.cosine(10)
    t, x0, n = 5, 0.7, 400_000
    g = torch.Generator().manual_seed(3)
    ab_prev = s.alpha_bars[t - 1]
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * torch.randn(n, generator=g)
    x_t = s.q_step(x_prev, t, torch.randn(n, generator=g))
    cov = torch.cov(torch.stack([x_prev, x_t]))
    slope = cov[0, 1] / cov[1, 1]                                     # E[x_{t-1} | x_t] is linear in x_t
    resid_var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    mean_at, var_at = s.posterior(torch.tensor([x0]), torch.tensor([0.5]), t)
    predicted = x_prev.mean() + slope * (0.5 - x_t.mean())
    assert mean_at.item() == pytest.approx(predicted.item(), abs=0.01)
    assert var_at.item() == pytest.approx(resid_var.item(), rel=0.02)


def test_posterior_at_the_first_step_is_x0():
    s = NoiseSchedule.cosine(10)
    x0, xt = torch.randn(3, 2), torch.randn(3, 2)
    mean, var = s.posterior(x0, xt, 0)
    assert torch.allclose(mean, x0, atol=1e-6) and (var == 0).all()


def test_eps_form_of_the_mean():
    s = NoiseSchedule.linear(50)
    g = torch.Generator().manual_seed(4)
    t = torch.randint(1, 50, (8,), generator=g)
    xt, eps = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    mean, _ = s.posterior(s.predict_x0(xt, t, eps), xt, t)
    a, b, ab = s.alphas[t][:, None], s.betas[t][:, None], s.alpha_bars[t][:, None]
    assert torch.allclose(mean, (xt - b / (1 - ab).sqrt() * eps) / a.sqrt(), atol=1e-4)


# --------------------------------------------------------------------------- the DDPM


class Oracle(nn.Module):
    """A 'denoiser' for data that is a single point c: it knows x0 = c, so eps = (x_t - sqrt(ab) c) / sqrt(1 - ab)."""

    def __init__(self, schedule: NoiseSchedule, c: torch.Tensor):
        super().__init__()
        self.s, self.c = schedule, c
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        ab = self.s.alpha_bars[t].view(-1, *([1] * (x.dim() - 1)))
        return (x - ab.sqrt() * self.c) / (1 - ab).sqrt() + 0 * self.dummy


def test_loss_is_zero_for_the_exact_noise_predictor():
    cfg = DDPMConfig(T=20, images=False)
    c = torch.tensor([1.5, -0.5])
    model = DDPM(nn.Identity(), (2,), cfg)
    model.net = Oracle(model.schedule, c)
    x = c.expand(16, 2).clone()
    assert model.loss(x, generator=torch.Generator().manual_seed(0)).item() < 1e-8
    assert model.loss(x + 0.3).item() > 1e-3                          # other data: not zero


@pytest.mark.parametrize("sigma", ["posterior", "beta"])
def test_sampling_with_the_oracle_returns_the_point(sigma):
    c = torch.tensor([0.8, -0.3])
    model = DDPM(nn.Identity(), (2,), DDPMConfig(T=30, images=False, sigma=sigma))
    model.net = Oracle(model.schedule, c)
    out, path = model.sample(50, generator=torch.Generator().manual_seed(0), return_path=True, path_every=10)
    assert out.shape == (50, 2)
    assert torch.allclose(out, c.expand(50, 2), atol=1e-4)
    assert [p[0] for p in path] == [30, 20, 10, 0]
    assert path[0][1].std() > 0.5                                     # starts as noise


def test_image_ddpm_face_and_range():
    set_seed(0)

    class Wild(nn.Module):                                            # predicts huge noise: x0 estimates out of range
        def forward(self, x, t):
            return -50 * torch.ones_like(x)

    model = DDPM(Wild(), (1, 4, 4), DDPMConfig(T=10))
    out = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 4, 4)
    assert out.min() >= 0 and out.max() <= 1
    _, x0 = model.denoise_step(torch.randn(3, 1, 4, 4), 5)
    assert x0.abs().max() <= 1                                        # the x0 estimate is clipped to an image
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2))
    with pytest.raises(ValueError, match="at least 1"):
        model.sample(0)
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        model.loss(torch.zeros(3, 1, 8, 8))


def test_config_errors():
    with pytest.raises(ValueError, match="schedule"):
        DDPM(nn.Identity(), (2,), DDPMConfig(schedule="sqrt"))
    with pytest.raises(ValueError, match="sigma"):
        DDPM(nn.Identity(), (2,), DDPMConfig(sigma="learned"))


def test_images_are_trained_in_minus_one_to_one():
    seen = []

    class Spy(nn.Module):
        def forward(self, x, t):
            seen.append((x, t))
            return torch.zeros_like(x)

    set_seed(0)
    model = DDPM(Spy(), (1, 4, 4), DDPMConfig(T=10, schedule="linear"))
    black = torch.zeros(2048, 1, 4, 4)
    loss = ddpm_loss_fn(model, (black, torch.zeros(2048)))                 # (x, labels) batches work too
    x, t = seen[0]
    expected = -model.schedule.alpha_bars[t].sqrt().mean().item()         # E[x_t] = sqrt(alpha_bar_t) x_0, x_0 = -1
    assert expected < -0.3 and x.mean().item() == pytest.approx(expected, abs=0.01)   # black is -1, not 0
    assert loss.item() == pytest.approx(1.0, abs=0.02)                     # predicting zero noise costs E[eps^2]


def test_ddpm_learns_a_gaussian():
    # Data N(mu, diag(sd^2)) in the plane: the samples of a trained DDPM must have that mean and spread.
    set_seed(0)
    mu, sd = torch.tensor([1.5, -1.0]), torch.tensor([0.3, 0.6])
    g = torch.Generator().manual_seed(0)
    data = mu + sd * torch.randn(8000, 2, generator=g)
    model = DDPM(MLPDenoiser(2, 64, 2, 16), (2,), DDPMConfig(T=50, images=False))
    h = train(model, lambda: data[torch.randint(len(data), (256,), generator=g)], 300, lr=3e-3, warmup=20,
              lr_min=1e-4, loss_fn=ddpm_loss_fn, device="cpu", progress=False)
    assert sum(h.loss[-50:]) / 50 < 0.6 * h.loss[0]
    samples = model.sample(2000, generator=torch.Generator().manual_seed(1))
    print("mean", samples.mean(0).tolist(), "sd", samples.std(0).tolist())
    assert torch.allclose(samples.mean(0), mu, atol=0.1)
    assert torch.allclose(samples.std(0), sd, rtol=0.25)


# --------------------------------------------------------------------------- DDIM


def random_unet_ddpm(T=20, n_classes=0, **kw):
    from aigc_helpers.unet import UNet, UNetConfig
    set_seed(0)
    net = UNet(UNetConfig(image_size=4, base=8, mults=(1, 2), t_dim=8, groups=4, n_classes=n_classes))
    nn.init.normal_(net.out.weight, std=0.3)                          # an untrained but not silent net
    return DDPM(net, (1, 4, 4), DDPMConfig(T=T, **kw))


def test_ddim_steps_are_evenly_spaced():
    model = DDPM(nn.Identity(), (2,), DDPMConfig(T=100, images=False))
    assert model.ddim_steps(100) == list(range(99, -1, -1))
    assert model.ddim_steps(4) == [99, 66, 33, 0]
    assert model.ddim_steps(1) == [99]
    with pytest.raises(ValueError, match="1..100"):
        model.ddim_steps(101)


def test_ddim_with_eta_1_and_every_step_is_the_ddpm_sampler():
    model = random_unet_ddpm(T=20)
    ddpm = model.sample(5, generator=torch.Generator().manual_seed(3))
    ddim = model.sample_ddim(5, steps=20, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ddpm, ddim, atol=1e-4)
    other = model.sample_ddim(5, steps=20, eta=0.5, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(ddpm, other, atol=1e-2)


def test_ddim_with_eta_0_is_deterministic():
    model = random_unet_ddpm(T=20)
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    a = model.sample_ddim(4, steps=7, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = model.sample_ddim(4, steps=7, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape == (4, 1, 4, 4) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="x_T must have shape"):
        model.sample_ddim(3, x_T=x_T)
    with pytest.raises(ValueError, match="eta"):
        model.sample_ddim(4, eta=-1)


@pytest.mark.parametrize("steps", [1, 3, 30])
def test_ddim_with_the_oracle_returns_the_point(steps):
    c = torch.tensor([0.8, -0.3])
    model = DDPM(nn.Identity(), (2,), DDPMConfig(T=30, images=False))
    model.net = Oracle(model.schedule, c)
    out = model.sample_ddim(10, steps=steps, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, c.expand(10, 2), atol=1e-4)


# --------------------------------------------------------------------------- labels and guidance


def test_guidance_mixes_the_two_predictions():
    model = random_unet_ddpm(T=20, n_classes=3).eval()
    nn.init.normal_(model.net.label_emb.weight)
    g = torch.Generator().manual_seed(0)
    xt, t, labels = torch.randn(4, 1, 4, 4, generator=g), torch.tensor([0, 5, 10, 19]), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        cond, uncond = model.net(xt, t, labels), model.net(xt, t)
        assert torch.allclose(model.predict_eps(xt, t, labels), cond)
        assert torch.allclose(model.predict_eps(xt, t, labels, guidance_scale=3.0), 3 * cond - 2 * uncond, atol=1e-5)
        assert torch.allclose(model.predict_eps(xt, t, labels, guidance_scale=0.0), uncond, atol=1e-6)
        assert not torch.allclose(cond, uncond, atol=1e-3)
        assert torch.allclose(model.predict_eps(xt, t), uncond)
    with pytest.raises(ValueError, match="guidance needs labels"):
        model.predict_eps(xt, t, guidance_scale=2.0)
    out = model.sample_ddim(3, steps=5, labels=torch.tensor([0, 1, 2]), guidance_scale=2.5,
                            generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="0..2"):
        model.sample(2, labels=torch.tensor([0, 3]))


def test_unconditional_models_refuse_labels():
    model = random_unet_ddpm(T=10)
    with pytest.raises(ValueError, match="unconditional"):
        model.sample_ddim(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        model.net(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_label_dropout(p):
    seen = []

    class Spy(nn.Module):
        config = type("C", (), {"n_classes": 10})()

        def forward(self, x, t, labels=None):
            seen.append(labels)
            return torch.zeros_like(x)

    model = DDPM(Spy(), (2,), DDPMConfig(T=10, images=False, p_uncond=p))
    labels = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    ddpm_loss_fn(model, (torch.zeros(20_000, 2), labels))
    dropped = seen[0] == 10
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.015)
    assert torch.equal(seen[0][~dropped], labels[~dropped])           # the others keep their label
    with pytest.raises(ValueError, match="p_uncond"):
        DDPM(Spy(), (2,), DDPMConfig(p_uncond=1.0))


def test_sample_starts_from_the_given_noise():
    model = DDPM(nn.Identity(), (2,), DDPMConfig(T=10, images=False))
    model.net = Oracle(model.schedule, torch.tensor([0.5, 0.5]))
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    _, path = model.sample(3, x_T=x_T, return_path=True)
    assert torch.equal(path[0][1], x_T)
    with pytest.raises(ValueError, match="x_T must have shape"):
        model.sample(4, x_T=x_T)


# --------------------------------------------------------------------------- Stable Diffusion's schedule


def test_scaled_linear_betas_have_a_linear_square_root():
    from aigc_helpers.diffusion import scaled_linear_betas
    b = scaled_linear_betas(1000).double()
    assert b.shape == (1000,)
    assert b[0].item() == pytest.approx(0.00085, rel=1e-5) and b[-1].item() == pytest.approx(0.012, rel=1e-5)
    t = torch.arange(1000, dtype=torch.float64)
    root = math.sqrt(0.00085) + t / 999 * (math.sqrt(0.012) - math.sqrt(0.00085))
    assert torch.allclose(b, root ** 2, rtol=1e-5)                    # sqrt(beta) is linear in t
    assert not torch.allclose(b, torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64), rtol=1e-2)
    assert torch.allclose(b.sqrt().diff(), torch.full((999,), (root[1] - root[0]).item(), dtype=torch.float64),
                          rtol=1e-3)
    b100 = scaled_linear_betas(100)                                    # rescaled by 1000 / T, as linear_betas
    assert b100[0].item() == pytest.approx(0.0085, rel=1e-5) and b100[-1].item() == pytest.approx(0.12, rel=1e-5)
    assert (scaled_linear_betas(5) <= 0.999).all()
    with pytest.raises(ValueError, match="at least 1"):
        scaled_linear_betas(0)


def test_scaled_linear_alpha_bar_is_stable_diffusions():
    s = NoiseSchedule.scaled_linear(1000)
    assert s.T == 1000
    assert s.alpha_bars[-1].item() == pytest.approx(0.0047, abs=1e-3)  # diffusers' final alphas_cumprod: 0.00466
    assert s.alpha_bars[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    assert (s.alpha_bars.diff() < 0).all()
    for T in (500, 200, 100):                                          # rescaled: about the same end point
        assert NoiseSchedule.scaled_linear(T).alpha_bars[-1].item() == pytest.approx(0.0047, rel=0.25)
    # it stops short of pure noise, unlike the linear schedule
    assert s.alpha_bars[-1] > 10 * NoiseSchedule.linear(1000).alpha_bars[-1]


def test_ddpm_config_accepts_scaled_linear_only_among_new_names():
    model = DDPM(nn.Identity(), (2,), DDPMConfig(T=50, schedule="scaled_linear", images=False))
    assert torch.equal(model.schedule.betas, NoiseSchedule.scaled_linear(50).betas)
    with pytest.raises(ValueError, match="scaled_linear"):
        DDPM(nn.Identity(), (2,), DDPMConfig(schedule="bogus"))


# --------------------------------------------------------------------------- conditions other than class labels


class TokenSpy(nn.Module):
    """A net whose condition is token ids (B, L), like text2image.TextConditionedUNet: records what it gets."""

    def __init__(self, L=5, vocab=9):
        super().__init__()
        self.L, self.vocab, self.seen = L, vocab, []

    def null_condition(self, ids):
        empty = torch.zeros_like(ids)
        empty[:, 0] = 1
        return empty

    def check_condition(self, ids, n):
        ids = ids.long()
        if ids.shape != (n, self.L) or (ids[:, 0] != 1).any() or (ids >= self.vocab).any():
            raise ValueError(f"bad token ids of shape {tuple(ids.shape)}")
        return ids

    def forward(self, x, t, labels=None):
        self.seen.append(labels)
        if labels is None:
            return torch.zeros_like(x)
        # a condition-dependent, x-dependent output: each row's ids weighted by position
        w = (labels.float() * torch.arange(1, labels.shape[1] + 1)).sum(1)        # (B,)
        return 0.01 * w.view(-1, *[1] * (x.dim() - 1)) * torch.ones_like(x) + 0.1 * x


def random_token_ids(n, L=5, vocab=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (n, L), generator=g)
    ids[:, 0] = 1
    return ids


def test_token_conditions_make_a_conditional_ddpm():
    spy = TokenSpy()
    model = DDPM(spy, (2,), DDPMConfig(T=10, images=False))
    assert model.n_classes == 0 and model.conditional
    ids = random_token_ids(4)
    assert torch.equal(model._null(ids), torch.tensor([[1, 0, 0, 0, 0]] * 4))
    assert not DDPM(MLPDenoiser(2, 8, 1, 8), (2,), DDPMConfig(T=10, images=False)).conditional
    assert random_unet_ddpm(n_classes=3).conditional
    assert torch.equal(random_unet_ddpm(n_classes=3)._null(torch.tensor([0, 2])), torch.tensor([3, 3]))
    # the net's check_condition is the one used
    with pytest.raises(ValueError, match="bad token ids"):
        model.sample_ddim(4, steps=2, labels=ids[:, :3])
    with pytest.raises(ValueError, match="bad token ids"):
        model.sample_ddim(3, steps=2, labels=ids)
    # ddpm_loss_fn passes token ids along
    ddpm_loss_fn(model, (torch.zeros(4, 2), ids))
    assert torch.equal(spy.seen[-1], ids)


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_label_dropout_replaces_whole_rows_of_token_ids(p):
    spy = TokenSpy()
    model = DDPM(spy, (2,), DDPMConfig(T=10, images=False, p_uncond=p))
    n = 20_000
    ids = random_token_ids(n, seed=1)
    model.loss(torch.zeros(n, 2), ids, generator=torch.Generator().manual_seed(0))
    got = spy.seen[-1]
    assert got.shape == ids.shape
    dropped = (got == model._null(ids)).all(1)                         # rows that became the empty prompt
    kept = (got == ids).all(1)
    assert (dropped | kept).all()                                      # never a partly dropped row
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.015)


def test_guidance_with_token_ids_and_a_negative_prompt():
    spy = TokenSpy()
    model = DDPM(spy, (2,), DDPMConfig(T=10, images=False))
    g = torch.Generator().manual_seed(0)
    xt, t = torch.randn(3, 2, generator=g), torch.tensor([1, 5, 9])
    ids, neg = random_token_ids(3, seed=2), random_token_ids(3, seed=3)
    empty = model._null(ids)
    cond, uncond, negative = spy(xt, t, ids), spy(xt, t, empty), spy(xt, t, neg)
    assert not torch.allclose(cond, uncond) and not torch.allclose(uncond, negative)
    assert torch.allclose(model.predict_eps(xt, t, ids), cond)
    assert torch.allclose(model.predict_eps(xt, t, ids, 4.0), uncond + 4 * (cond - uncond), atol=1e-5)
    assert torch.allclose(model.predict_eps(xt, t, ids, 4.0, uncond_labels=neg),
                          negative + 4 * (cond - negative), atol=1e-5)
    assert torch.allclose(model.predict_eps(xt, t, ids, 0.0, uncond_labels=neg), negative, atol=1e-6)
    assert torch.allclose(model.predict_eps(xt, t, ids, 1.0, uncond_labels=neg), cond)   # s = 1: no mix


def test_ddim_with_a_negative_prompt():
    spy = TokenSpy()
    model = DDPM(spy, (2,), DDPMConfig(T=20, images=False))
    ids, neg = random_token_ids(3, seed=2), random_token_ids(3, seed=3)
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    plain = model.sample_ddim(3, steps=4, labels=ids, guidance_scale=3.0, x_T=x_T)
    empty_neg = model.sample_ddim(3, steps=4, labels=ids, guidance_scale=3.0, x_T=x_T,
                                  uncond_labels=model._null(ids))
    negative = model.sample_ddim(3, steps=4, labels=ids, guidance_scale=3.0, x_T=x_T, uncond_labels=neg)
    assert torch.allclose(plain, empty_neg)                            # the empty prompt is the default
    assert not torch.allclose(plain, negative, atol=1e-3)
    assert any(s is not None and torch.equal(s[3:], neg) for s in spy.seen)   # the net saw the negative prompt
    with pytest.raises(ValueError, match="bad token ids"):
        model.sample_ddim(3, steps=4, labels=ids, guidance_scale=3.0, uncond_labels=neg[:2])
    with pytest.raises(ValueError, match="only make sense with labels"):
        model.sample_ddim(3, steps=4, uncond_labels=neg)


def test_class_labels_with_a_negative_label():
    model = random_unet_ddpm(T=20, n_classes=3).eval()
    nn.init.normal_(model.net.label_emb.weight)
    g = torch.Generator().manual_seed(0)
    xt, t = torch.randn(2, 1, 4, 4, generator=g), torch.tensor([3, 12])
    labels, neg = torch.tensor([0, 1]), torch.tensor([2, 2])
    with torch.no_grad():
        cond, negative = model.net(xt, t, labels), model.net(xt, t, neg)
        assert torch.allclose(model.predict_eps(xt, t, labels, 2.0, uncond_labels=neg),
                              2 * cond - negative, atol=1e-5)
    with pytest.raises(ValueError, match="0..2"):
        model.sample_ddim(2, steps=2, labels=labels, guidance_scale=2.0, uncond_labels=torch.tensor([0, 3]))


def test_a_one_step_schedule_reaches_noise():
    from aigc_helpers.diffusion import scaled_linear_betas
    for betas in (linear_betas(1), scaled_linear_betas(1)):
        assert betas.shape == (1,) and 1 - betas[0] < 0.02            # alpha_bar_T is small, as with T = 1000
