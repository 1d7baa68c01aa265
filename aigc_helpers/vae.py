"""The variational autoencoder (VAE) and the beta-VAE.

A VAE (Kingma and Welling, 2014) is a latent variable model

    z ~ p(z) = N(0, I),        x ~ p_theta(x | z), one Bernoulli/binomial per pixel with p = sigmoid(decoder(z))

trained together with an encoder q_phi(z | x) = N(mu(x), diag sigma^2(x)) by
maximising the evidence lower bound (ELBO) on log p_theta(x):

    ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)

The beta-VAE (Higgins et al., 2017) weights the KL term by beta:
loss = reconstruction + beta * KL. beta = 1 is the plain VAE.

Reading order: ``gaussian_kl`` (the KL term in closed form), ``reparameterize``
(the sampling step gradients can pass through), ``binomial_nll`` (the
reconstruction term), ``VAEConfig`` and ``VAE`` (encoder and decoder MLPs),
``vae_loss`` (the numbers we train on and report) and ``make_vae_step``
(one optimiser step, for ``aigc_helpers.train.train(..., step_fn=...)``).

Reconstruction term: the decoder outputs one logit per pixel, p = sigmoid(logit),
and the pixels are independent. With ``pixel_trials=1`` (the default) each pixel
is Bernoulli(p) and -log p(x|z) is the binary cross-entropy summed over the
pixels, in nats per image: the usual choice for images in [0, 1]. For grey
levels strictly between 0 and 1 that is not a normalised likelihood (its
minimum is not 0). sklearn's 8x8 digits are counts: each pixel is the number k
of black pixels, 0 to 16, in a 4x4 block of a 32x32 scan, stored as x = k / 16.
``pixel_trials=16`` models k ~ Binomial(16, p), whose negative log-likelihood
is 16 * BCE(p, x) - log C(16, k): a true likelihood, so the ELBO is a true lower
bound on log p(x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) in closed form, one value per row.

    KL = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - log sigma_j^2 - 1 )

    Args: ``mu``, ``logvar`` of shape (B, d). Returns (B,) in nats.
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"expected mu and logvar of the same shape (B, d), got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)   # (B,)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z ~ N(mu, sigma^2) as z = mu + sigma * eps with eps ~ N(0, I).

    The randomness sits in ``eps``, which does not depend on the parameters, so
    z is a differentiable function of ``mu`` and ``logvar``: dz/dmu = 1 and
    dz/dsigma = eps (Kingma and Welling, 2014, section 2.4).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # same shape as mu
    return mu + torch.exp(0.5 * logvar) * eps


def binomial_nll(logits: torch.Tensor, x: torch.Tensor, trials: int = 1) -> torch.Tensor:
    """-log p(x | z) for independent pixels, one value per image (nats).

    Each pixel is the fraction ``x = k / n`` of ``n = trials`` binary sub-pixels that
    are on, with k ~ Binomial(n, p) and p = sigmoid(logit):

        -log p(k) = n * BCE(p, x) - log C(n, k)

    With ``trials=1`` this is the Bernoulli likelihood, i.e. binary cross-entropy
    summed over the pixels. Args: ``logits`` and ``x`` of shape (B, C, H, W),
    ``x`` in [0, 1]. Returns (B,).
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and images {tuple(x.shape)} must have the same shape")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, C, H, W)
    nll = trials * bce
    if trials > 1:                                                        # the log C(n, k) term
        n, k = torch.tensor(float(trials)), trials * x
        nll = nll - (torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1))
    return nll.flatten(1).sum(dim=1)                                      # (B,)


@dataclass
class VAEConfig:
    in_channels: int = 1     # grey images
    image_size: int = 8      # sklearn digits, 8x8 (Kingma and Welling 2014: MNIST, 28x28)
    hidden: int = 128        # units per hidden layer (Kingma and Welling: 500)
    n_layers: int = 2        # hidden layers in the encoder and in the decoder (Kingma and Welling: 1)
    latent_dim: int = 8      # size of z (Kingma and Welling: 2 to 200; 2 to draw the latent space)
    pixel_trials: int = 1    # binary sub-pixels per pixel: 1 = Bernoulli pixels; sklearn digits count 16
    beta: float = 1.0        # weight of the KL term; 1 = VAE (Higgins et al. 2017: 4 on 2-D shapes)

    @property
    def n_pixels(self) -> int:
        return self.in_channels * self.image_size * self.image_size


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """An MLP encoder q(z|x) = N(mu, diag sigma^2) and an MLP decoder p(x|z) = Bernoulli(logits).

    Image generator face: ``sample(n, labels=None, generator=None) -> (n, C, H, W)`` in [0, 1].
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        if config.latent_dim < 1 or config.hidden < 1 or config.n_layers < 1:
            raise ValueError(f"latent_dim, hidden and n_layers must be >= 1, got {config}")
        if config.beta < 0:
            raise ValueError(f"beta must be >= 0, got {config.beta}")
        self.config = config
        c = config
        self.encoder = _mlp([c.n_pixels] + [c.hidden] * c.n_layers + [2 * c.latent_dim])  # x -> (mu, logvar)
        self.decoder = _mlp([c.latent_dim] + [c.hidden] * c.n_layers + [c.n_pixels])      # z -> pixel logits

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_images(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}; resize them or build the VAE with another config")
        if len(x) == 0:
            raise ValueError("got an empty batch of images")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) -> ``mu``, ``logvar`` of q(z|x), each (B, latent_dim)."""
        self._check_images(x)
        h = self.encoder(x.flatten(1))                 # (B, 2 * latent_dim)
        mu, logvar = h.chunk(2, dim=1)                 # (B, latent_dim) each
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> pixel logits (B, C, H, W) of p(x|z)."""
        c = self.config
        if z.dim() != 2 or z.shape[1] != c.latent_dim:
            raise ValueError(f"expected latents of shape (B, {c.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z).view(len(z), c.in_channels, c.image_size, c.image_size)  # (B, C, H, W)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> the decoder's mean image sigmoid(logits), (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Encode, sample one z per image, decode: returns ``(logits, mu, logvar)``."""
        mu, logvar = self.encode(x)                          # (B, d) each
        z = reparameterize(mu, logvar, generator)            # (B, d)
        return self.decode_logits(z), mu, logvar             # (B, C, H, W), (B, d), (B, d)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode and decode ``x``: with ``sample=False`` through the mean ``mu`` (deterministic),
        else through one random z ~ q(z|x). Returns (B, C, H, W) in [0, 1]."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator) if sample else mu
        return self.decode(z)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images: z ~ N(0, I), then the decoder's mean image. Returns (n, C, H, W) in [0, 1].

        ``generator`` (a ``torch.Generator`` on the model's device) makes the draw repeatable.
        """
        if labels is not None:
            raise ValueError("this VAE is unconditional: call sample(n) without labels")
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.device,
                        dtype=next(self.parameters()).dtype)                                # (n, d)
        return self.decode(z)


class VAELoss(NamedTuple):
    """The numbers of one evaluation, each averaged over the batch (nats per image)."""

    loss: torch.Tensor    # recon + beta * kl: what training minimises
    recon: torch.Tensor   # -E_q[log p(x|z)], the reconstruction term
    kl: torch.Tensor      # KL(q(z|x) || p(z)), the regulariser
    elbo: torch.Tensor    # -(recon + kl), the lower bound on log p(x) whatever beta is


def vae_loss(model: VAE, x: torch.Tensor, beta: float | None = None, n_samples: int = 1,
             generator: torch.Generator | None = None) -> VAELoss:
    """The beta-VAE loss with its terms: the ELBO estimated with ``n_samples`` draws of z per image.

        recon = -1/L sum_l log p(x | z_l),  z_l = mu + sigma * eps_l   (Bernoulli: BCE summed over pixels)
        kl    = KL(q(z|x) || N(0, I))                                 (closed form, no sampling)
        loss  = recon + beta * kl,          elbo = -(recon + kl)

    ``beta`` defaults to ``model.config.beta``. ``x`` must hold values in [0, 1].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    beta = model.config.beta if beta is None else beta
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    mu, logvar = model.encode(x)                                             # (B, d) each
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must have values in [0, 1] (Bernoulli pixels), got [{x.min():.3g}, {x.max():.3g}]")
    B, d = mu.shape
    mu_l = mu.unsqueeze(0).expand(n_samples, B, d).reshape(-1, d)            # (L*B, d)
    logvar_l = logvar.unsqueeze(0).expand(n_samples, B, d).reshape(-1, d)    # (L*B, d)
    z = reparameterize(mu_l, logvar_l, generator)                            # (L*B, d)
    logits = model.decode_logits(z)                                          # (L*B, C, H, W)
    target = x.unsqueeze(0).expand(n_samples, *x.shape).reshape(-1, *x.shape[1:])  # (L*B, C, H, W)
    recon = binomial_nll(logits, target, model.config.pixel_trials).view(n_samples, B).mean()          # scalar
    kl = gaussian_kl(mu, logvar).mean()                                      # scalar
    return VAELoss(recon + beta * kl, recon, kl, -(recon + kl))


def make_vae_step(model: VAE, optimizer: torch.optim.Optimizer, beta: float | None = None,
                  grad_clip: float | None = 10.0) -> Callable[[object, int], dict[str, float]]:
    """One training step for ``train(model, data, steps, step_fn=...)``.

    The batch is ``x`` or ``(x, labels)`` (labels are ignored). Returns a function
    that updates the model (clipping the gradient norm to ``grad_clip``; ``None``:
    no clipping) and reports ``loss``, ``recon`` and ``kl``, so the training
    history keeps both terms of the loss.
    """

    def step(batch, step_index: int) -> dict[str, float]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model.train()
        out = vae_loss(model, x, beta)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return {"loss": out.loss.item(), "recon": out.recon.item(), "kl": out.kl.item()}

    return step
