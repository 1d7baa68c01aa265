"""The first stage of latent diffusion: a convolutional autoencoder with a KL-regularised latent.

Stable Diffusion (Rombach et al., 2022) does not run diffusion on pixels. It
first trains an autoencoder that squeezes a 512x512x3 image into a 64x64x4
*latent* (8 times smaller per side), and then trains the diffusion model on
latents, where every step is about 48 times cheaper. The decoder turns the
generated latent back into an image.

The encoder outputs a Gaussian q(z | x) = N(mu, diag sigma^2), like a VAE's,
but its KL term towards N(0, I) is weighted very lightly (Stable Diffusion:
1e-6). The KL is there only to keep the latent at a sane scale, not to make
q(z) match a prior: the diffusion model will learn the latents' distribution.
Stable Diffusion also adds a perceptual and an adversarial loss for sharp
details; this miniature uses the squared error alone.

Before diffusion, latents are multiplied by a constant so that they have unit
standard deviation, the scale the noise schedule expects. For Stable
Diffusion's autoencoder that constant is 0.18215; ``latent_scale`` measures
ours the same way.

Reading order: ``AutoencoderConfig``, ``ResidualConv``, ``conv_encoder``, ``conv_decoder``, ``Autoencoder``
(``encode``, ``decode``, ``forward``), ``autoencoder_loss``, ``latent_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vae import gaussian_kl, reparameterize


@dataclass
class AutoencoderConfig:
    in_channels: int = 1          # grey images (Stable Diffusion: 3, RGB)
    image_size: int = 32          # Fashion-MNIST padded from 28 to 32 (Stable Diffusion: 512)
    channels: tuple = (32, 64)    # channels after each halving; len(channels) halvings (SD: 128, 256, 512, 512)
    latent_channels: int = 4      # as in Stable Diffusion
    groups: int = 8               # GroupNorm groups (SD: 32)
    kl_weight: float = 1e-4       # weight of the KL term per image (SD: 1e-6)


class ResidualConv(nn.Module):
    """x + conv(SiLU(GroupNorm(x))): one residual 3x3 convolution that keeps the shape."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.silu(self.norm(x)))


def conv_encoder(in_channels: int, channels: tuple, out_channels: int, groups: int) -> nn.Sequential:
    """Image -> feature map halved len(channels) times: [stride-2 4x4 conv, residual block, SiLU] per halving."""
    layers, prev = [], in_channels
    for ch in channels:
        layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), ResidualConv(ch, groups), nn.SiLU()]
        prev = ch
    layers.append(nn.Conv2d(prev, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


def conv_decoder(latent_channels: int, channels: tuple, out_channels: int, groups: int) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: stride-2 transposed convolutions back to full size (logits)."""
    layers = [nn.Conv2d(latent_channels, channels[-1], 3, padding=1), ResidualConv(channels[-1], groups)]
    outs = list(reversed(channels[:-1])) + [out_channels]
    for i, (ch_in, ch_out) in enumerate(zip(reversed(channels), outs)):
        layers += [nn.SiLU(), nn.ConvTranspose2d(ch_in, ch_out, 4, stride=2, padding=1)]
        if i < len(outs) - 1:                                              # not after the last (image) layer
            layers.append(ResidualConv(ch_out, groups))
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Image (B, C, H, W) in [0, 1] <-> latent (B, latent_channels, H / f, W / f), f = 2^len(channels).

    Each halving is a stride-2 4x4 convolution followed by a residual block;
    the decoder mirrors it with stride-2 transposed convolutions.
    """

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()):
        super().__init__()
        c = config
        if c.image_size % self.factor_of(c):
            raise ValueError(f"image_size {c.image_size} cannot be halved {len(c.channels)} times")
        self.config = c
        self.encoder = conv_encoder(c.in_channels, c.channels, 2 * c.latent_channels, c.groups)   # mu, log sigma^2
        self.decoder = conv_decoder(c.latent_channels, c.channels, c.in_channels, c.groups)      # ends in logits

    @staticmethod
    def factor_of(config: AutoencoderConfig) -> int:
        return 2 ** len(config.channels)

    @property
    def factor(self) -> int:
        """How many times smaller the latent is than the image, per side."""
        return self.factor_of(self.config)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.config.image_size // self.factor
        return (self.config.latent_channels, s, s)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z | x), each (B, latent_channels, H / f, W / f)."""
        c = self.config
        if x.dim() != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"expected images (B, {c.in_channels}, {c.image_size}, {c.image_size}) in [0, 1], "
                             f"got {tuple(x.shape)}")
        mu, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)                  # the net sees [-1, 1]
        return mu, logvar.clamp(-30.0, 20.0)                                  # as Stable Diffusion does

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_channels, h, w) -> images (B, C, H, W) in [0, 1]."""
        if z.dim() != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected latents (B, {', '.join(map(str, self.latent_shape))}), got {tuple(z.shape)}")
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Encode, draw z ~ q(z | x), decode. Returns ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        return self.decode(z), mu, logvar


def autoencoder_loss(model: Autoencoder, batch, generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared error summed over pixels + ``kl_weight`` * KL(q(z | x) || N(0, I)), averaged over images.

    ``batch`` is ``x`` or ``(x, labels)`` (labels are ignored): the face of the book's ``train`` loop.
    """
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    x_hat, mu, logvar = model(x, generator)
    rec = (x_hat - x).pow(2).flatten(1).sum(1)                                 # (B,)
    kl = gaussian_kl(mu.flatten(1), logvar.flatten(1))                         # (B,)
    return (rec + model.config.kl_weight * kl).mean()


@torch.no_grad()
def latent_scale(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> float:
    """1 / standard deviation of the latent means of images ``x``: multiply latents by it before diffusion.

    (Stable Diffusion's constant 0.18215 is 1 / the standard deviation of its autoencoder's latents
    on a batch of training images; with a tiny KL weight, sampled latents and their means differ little.)
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    mu = torch.cat([model.encode(x[i:i + batch_size].to(dev))[0].cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return 1.0 / mu.std().item()
