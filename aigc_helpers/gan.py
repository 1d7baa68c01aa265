"""Generative adversarial networks: losses, WGAN-GP, small generators and discriminators.

A GAN (Goodfellow et al., 2014) trains two networks against each other. The
generator ``G`` turns noise ``z`` into samples; the discriminator ``D`` outputs
a logit, the log-odds that its input is real. They play the minimax game

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

This module holds, top to bottom:

1. the losses: the discriminator's binary cross-entropy, the generator's
   non-saturating loss ``-log D(G(z))`` and the original (saturating)
   ``log(1 - D(G(z)))``; the Wasserstein critic and generator losses and the
   gradient penalty of WGAN-GP (Gulrajani et al., 2017);
2. models: an MLP generator/discriminator for 2-D toy data and a DCGAN
   generator/discriminator for small grey images (Radford et al., 2016);
3. ``make_gan_step``: one alternating update (``n_critic`` discriminator steps,
   one generator step) packaged as a ``step_fn`` for :func:`aigc_helpers.train.train`;
4. ``modes_covered``: how many modes of a Gaussian mixture a sampler reaches.

Every image generator has the book's face ``sample(n, labels=None,
generator=None) -> (n, C, H, W)`` in [0, 1]. Images live in [0, 1] everywhere;
the discriminator rescales them to [-1, 1] itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- 1. losses
#
# D(x) = sigmoid(logit). With softplus(a) = log(1 + e^a):
#   -log D(x)       = softplus(-logit)
#   -log(1 - D(x))  = softplus(logit)
# Working on logits keeps the losses finite even when D saturates at 0 or 1.


def _check_logits(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor of scores, got {t!r}")


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``-[log D(x) + log(1 - D(G(z)))]``, each term averaged over its batch.

    The binary cross-entropy of "real -> 1, fake -> 0"; equals
    ``F.binary_cross_entropy_with_logits(real, 1) + F.binary_cross_entropy_with_logits(fake, 0)``.
    At ``D = 1/2`` everywhere it is ``2 log 2 = 1.386``.
    """
    _check_logits("real_logits", real_logits)
    _check_logits("fake_logits", fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def gan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log D(G(z))`` (mean): strong gradients when D wins."""
    _check_logits("fake_logits", fake_logits)
    return F.softplus(-fake_logits).mean()


def gan_g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """The original minimax generator loss ``log(1 - D(G(z)))`` (mean), to be minimised.

    It saturates: when D confidently rejects the fakes (D -> 0, early in
    training) its gradient vanishes. Shown for comparison, not used.
    """
    _check_logits("fake_logits", fake_logits)
    return -F.softplus(fake_logits).mean()


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss ``E[f(G(z))] - E[f(x)]`` (minimising it maximises the gap)."""
    _check_logits("real_scores", real_scores)
    _check_logits("fake_scores", fake_scores)
    return fake_scores.mean() - real_scores.mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss ``-E[f(G(z))]``."""
    _check_logits("fake_scores", fake_scores)
    return -fake_scores.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None, return_norms: bool = False):
    """WGAN-GP's penalty ``E[(||grad_x f(x_hat)||_2 - 1)^2]`` at random interpolates.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per
    sample (Gulrajani et al., 2017). The graph is kept (``create_graph=True``)
    so the penalty can be back-propagated into the critic's weights.
    With ``return_norms=True`` returns ``(penalty, norms (B,))``.
    """
    if real.shape != fake.shape or real.dim() < 2 or len(real) == 0:
        raise ValueError(f"real and fake must be non-empty batches of the same shape, "
                         f"got {tuple(real.shape)} and {tuple(fake.shape)}")
    b = real.shape[0]
    eps = torch.rand((b,) + (1,) * (real.dim() - 1), generator=generator, device=real.device,
                     dtype=real.dtype)                                                        # (B, 1, ...)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)           # (B, ...)
    scores = critic(x_hat)                                                                   # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)                    # (B, ...)
    norms = grad.reshape(b, -1).norm(dim=1)                                                  # (B,)
    penalty = (norms - 1).pow(2).mean()
    return (penalty, norms.detach()) if return_norms else penalty


# --------------------------------------------------------------------------- 2. models


class _Sampler(nn.Module):
    """Shared ``noise`` and ``sample`` for unconditional generators (``forward(z)``)."""

    z_dim: int

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal latents ``(n, z_dim)`` on the model's device, in its dtype."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        p = next(self.parameters())
        return torch.randn(n, self.z_dim, generator=generator, device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples (no gradient, eval mode, on the model's device); deterministic given ``generator``."""
        if labels is not None:
            raise ValueError(f"{type(self).__name__} is unconditional: it takes no labels")
        z = self.noise(n, generator)
        was_training = self.training
        self.eval()
        out = self(z)
        self.train(was_training)
        return out


@dataclass
class GANConfig:
    """MLPs for 2-D toy data (the ring of 8 Gaussians), after the toy experiment of
    Gulrajani et al. (2017), narrower."""

    data_dim: int = 2       # points in the plane
    z_dim: int = 2          # noise dimension (WGAN-GP's toy: 2)
    hidden: int = 64        # units per hidden layer (WGAN-GP's toy: 512)
    n_layers: int = 3       # hidden layers in G and in D (WGAN-GP's toy: 3)

    def __post_init__(self):
        if min(self.data_dim, self.z_dim, self.hidden, self.n_layers) < 1:
            raise ValueError(f"all GANConfig sizes must be positive: {self}")


def _mlp(d_in: int, hidden: int, n_layers: int, d_out: int, act: Callable[[], nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), act()]
    layers.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*layers)


class MLPGenerator(_Sampler):
    """``z (B, z_dim) -> x (B, data_dim)``: an MLP with ReLU. ``sample(n)`` returns points ``(n, data_dim)``."""

    def __init__(self, config: GANConfig = GANConfig()):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.net = _mlp(config.z_dim, config.hidden, config.n_layers, config.data_dim, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected noise of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z)                                   # (B, data_dim)


class MLPDiscriminator(nn.Module):
    """``x (B, data_dim) -> logit (B,)``: an MLP with LeakyReLU (a critic for WGAN-GP, too)."""

    def __init__(self, config: GANConfig = GANConfig()):
        super().__init__()
        self.config = config
        self.net = _mlp(config.data_dim, config.hidden, config.n_layers, 1, lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.config.data_dim:
            raise ValueError(f"expected points of shape (B, {self.config.data_dim}), got {tuple(x.shape)}")
        return self.net(x).squeeze(-1)                       # (B,)


@dataclass
class DCGANConfig:
    """A DCGAN for small grey images (Radford et al., 2016: 64x64 RGB, z_dim 100, width 128)."""

    image_size: int = 16     # 16 = Fashion-MNIST resized (DCGAN: 64); must be a multiple of 4
    channels: int = 1        # grey images (DCGAN: 3)
    z_dim: int = 32          # noise dimension (DCGAN: 100)
    width: int = 32          # G: 2w -> w -> w/2 channels, D: w -> 2w (DCGAN: G 1024 -> 128, D 128 -> 1024)
    d_batchnorm: bool = True  # BatchNorm in D; WGAN-GP needs False (the penalty is per sample)

    def __post_init__(self):
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2x up/down-samplings), got {self.image_size}")
        if min(self.channels, self.z_dim, self.width) < 1:
            raise ValueError(f"channels, z_dim and width must be positive: {self}")


class DCGenerator(_Sampler):
    """``z (B, z_dim) -> images (B, C, S, S)`` in [0, 1].

    Project and reshape to ``(2w, S/4, S/4)``, then two stride-2 transposed
    convolutions (each doubles the size) with BatchNorm and ReLU, and a 3x3
    convolution to the output channels with a sigmoid.
    """

    def __init__(self, config: DCGANConfig = DCGANConfig()):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        w, s = config.width, config.image_size // 4
        self.project = nn.Sequential(nn.Linear(config.z_dim, 2 * w * s * s, bias=False),
                                     nn.BatchNorm1d(2 * w * s * s), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),        # (w, S/2, S/2)
            nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, w // 2 or 1, 4, stride=2, padding=1, bias=False),  # (w/2, S, S)
            nn.BatchNorm2d(w // 2 or 1), nn.ReLU(),
            nn.Conv2d(w // 2 or 1, config.channels, 3, padding=1),                   # (C, S, S)
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected noise of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        s = self.config.image_size // 4
        h = self.project(z).view(-1, 2 * self.config.width, s, s)                     # (B, 2w, S/4, S/4)
        return self.net(h)                                                            # (B, C, S, S)


class DCDiscriminator(nn.Module):
    """``images (B, C, S, S) in [0, 1] -> logit (B,)``.

    Two stride-2 convolutions with LeakyReLU(0.2) (BatchNorm on the second
    unless ``d_batchnorm=False``), then a linear layer to one score.
    """

    def __init__(self, config: DCGANConfig = DCGANConfig()):
        super().__init__()
        self.config = config
        w, s = config.width, config.image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(config.channels, w, 4, stride=2, padding=1),                    # (w, S/2, S/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=not config.d_batchnorm),  # (2w, S/4, S/4)
            nn.BatchNorm2d(2 * w) if config.d_batchnorm else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Flatten(),                                                             # (2w * S/4 * S/4,)
            nn.Linear(2 * w * s * s, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        want = (c.channels, c.image_size, c.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {want[0]}, {want[1]}, {want[2]}) in [0, 1], "
                             f"got {tuple(x.shape)}; resize them to {c.image_size}x{c.image_size} first")
        return self.net(2 * x - 1).squeeze(-1)                # [0, 1] -> [-1, 1]; (B,)


# --------------------------------------------------------------------------- 3. the alternating update


def make_gan_step(G: nn.Module, D: nn.Module, *, loss: str = "gan", lr_g: float = 2e-4, lr_d: float = 2e-4,
                  betas: tuple[float, float] = (0.5, 0.999), n_critic: int = 1, gp_weight: float = 10.0,
                  decay_steps: int | None = None) -> Callable[[object, int], dict[str, float]]:
    """One training step of a GAN as a ``step_fn`` for :func:`aigc_helpers.train.train`.

    ``loss="gan"``: D minimises :func:`gan_d_loss`, G minimises :func:`gan_g_loss`
    (non-saturating); ``loss="minimax"``: G minimises :func:`gan_g_loss_minimax`;
    ``loss="wgan-gp"``: the critic minimises :func:`wgan_critic_loss` plus
    ``gp_weight`` times :func:`gradient_penalty`, G minimises :func:`wgan_g_loss`.

    Each call makes ``n_critic`` updates of D (a fresh fake batch each time, the
    same real batch) and then one update of G, both with Adam. With
    ``decay_steps`` both learning rates fall linearly to 0 over that many calls
    (as in Gulrajani et al., 2017), so the last samples do not jitter. The batch is the
    real data: a tensor, or a tuple whose first item is the tensor (labels are
    ignored). Returns a dict with ``loss`` (the D loss), ``d_loss``, ``g_loss``,
    and for WGAN-GP also ``gp``, ``grad_norm`` (mean norm at the interpolates)
    and ``w_dist`` (the critic's estimate ``E f(x) - E f(G(z))``).
    """
    if loss not in ("gan", "minimax", "wgan-gp"):
        raise ValueError(f"loss must be 'gan', 'minimax' or 'wgan-gp', got {loss!r}")
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}")
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    g_loss_fn = {"gan": gan_g_loss, "minimax": gan_g_loss_minimax, "wgan-gp": wgan_g_loss}[loss]
    calls = [0]   # counted here, not taken from ``step_index``: train() may be called in several chunks

    def step(batch, step_index: int) -> dict[str, float]:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch         # (B, ...)
        if decay_steps:
            scale = max(0.0, 1.0 - calls[0] / decay_steps)
            for opt, lr in ((opt_g, lr_g), (opt_d, lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * scale
        calls[0] += 1
        b = len(real)
        logs: dict[str, float] = {}
        G.train()
        D.train()
        for _ in range(n_critic):                                              # --- D / critic
            with torch.no_grad():
                fake = G(G.noise(b))                                           # (B, ...) no grad into G
            real_out, fake_out = D(real), D(fake)                              # (B,), (B,)
            if loss == "wgan-gp":
                gp, norms = gradient_penalty(D, real, fake, return_norms=True)
                d_loss = wgan_critic_loss(real_out, fake_out) + gp_weight * gp
                logs.update(gp=gp.item(), grad_norm=norms.mean().item(),
                            w_dist=(real_out.mean() - fake_out.mean()).item())
            else:
                d_loss = gan_d_loss(real_out, fake_out)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        fake = G(G.noise(b))                                                   # --- G
        g_loss = g_loss_fn(D(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()                                                      # D's grads are cleared next step
        opt_g.step()
        return {"loss": d_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(), **logs}

    step.opt_g, step.opt_d = opt_g, opt_d   # exposed for inspection (learning rates, state)
    return step


class GANPair(nn.Module):
    """G and D in one module, so :func:`~aigc_helpers.train.train` and
    :func:`~aigc_helpers.train.load_or_train` move, save and load both together."""

    def __init__(self, G: nn.Module, D: nn.Module):
        super().__init__()
        self.G, self.D = G, D

    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.G.sample(n, labels=labels, generator=generator)


# --------------------------------------------------------------------------- 4. mode coverage


def mode_counts(samples: torch.Tensor, centers: torch.Tensor, std: float, radius: float = 3.0) -> torch.Tensor:
    """How many ``samples (N, D)`` lie within ``radius * std`` of each of the ``centers (K, D)``: ``(K,)``."""
    if samples.dim() != 2 or centers.dim() != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(f"expected samples (N, D) and centers (K, D), got {tuple(samples.shape)} "
                         f"and {tuple(centers.shape)}")
    if len(samples) == 0 or std <= 0:
        raise ValueError(f"need at least one sample and std > 0, got {len(samples)} samples and std={std}")
    d = torch.cdist(samples.float().cpu(), centers.float().cpu())      # (N, K)
    return (d <= radius * std).sum(0)                                   # (K,)


def modes_covered(samples: torch.Tensor, centers: torch.Tensor, std: float, min_frac: float = 0.02) -> int:
    """Number of modes that receive at least ``min_frac`` of the samples within 3 std of their centre.

    With 8 modes a perfect sampler puts 12.5 % on each; ``min_frac=0.02``
    counts a mode as covered when it gets at least 2 % (40 of 2,000 samples).
    """
    if not 0 < min_frac <= 1:
        raise ValueError(f"min_frac must be in (0, 1], got {min_frac}")
    counts = mode_counts(samples, centers, std)
    return int((counts >= min_frac * len(samples)).sum())
