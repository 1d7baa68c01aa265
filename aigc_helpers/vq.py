"""Discrete image tokens: a vector-quantised autoencoder (VQ-VAE).

DALL-E (Ramesh et al., 2021) writes an image as a grid of integers, so that a
Transformer can model images the way GPT models text: one token at a time.
The first stage is an autoencoder whose latent is not a vector of real numbers
but a grid of *codes*, each an index into a learned codebook of ``n_codes``
vectors (DALL-E: a 32x32 grid, 8192 codes; this miniature: 7x7, 128 codes).

Vector quantisation (van den Oord et al., 2017) replaces each encoder output
z by its nearest codebook vector e_k, k = argmin_j ||z - e_j||. The argmin has
no gradient, so training copies the decoder's gradient straight through to
the encoder (``z + (e - z).detach()``), and two extra terms move the two
sides towards each other:

    loss = ||x - x_hat||^2 + ||sg[z] - e||^2 + beta * ||z - sg[e]||^2

(sg = stop-gradient): the codebook term pulls the chosen codes to the encoder
outputs, the commitment term (beta = 0.25) keeps the encoder near its codes.

A code that no encoder output ever picks gets no gradient and is wasted.
``VectorQuantizer`` counts how often each code is chosen during training and
every ``restart_every`` steps moves the unused ones onto random encoder
outputs of the current batch (the codebook restarts of Jukebox, Dhariwal et
al., 2020). DALL-E itself trains a "discrete VAE" with a Gumbel-softmax
relaxation instead; the tokens it produces play the same part.

Reading order: ``VQConfig``, ``VectorQuantizer`` (``nearest``, ``lookup``,
``forward``, ``restart_dead_codes``), ``VQAutoencoder``, ``vq_loss``,
``code_perplexity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import conv_decoder, conv_encoder


@dataclass
class VQConfig:
    in_channels: int = 1          # grey images (DALL-E: 3, RGB)
    image_size: int = 28          # Fashion-MNIST as it is (DALL-E: 256)
    channels: tuple = (32, 64)    # channels after each halving: 28 -> 14 -> 7 (DALL-E: 8 times smaller per side)
    code_dim: int = 16            # size of a codebook vector
    n_codes: int = 128            # codebook size, the image "vocabulary" (DALL-E: 8192)
    beta: float = 0.25            # weight of the commitment term (van den Oord et al.: 0.25)
    restart_every: int = 50       # training steps between codebook restarts (0: never)
    groups: int = 8               # GroupNorm groups


class VectorQuantizer(nn.Module):
    """Feature map (B, D, h, w) -> nearest codebook vectors, their indices, and the VQ loss."""

    def __init__(self, n_codes: int, dim: int, beta: float = 0.25, restart_every: int = 50):
        super().__init__()
        if n_codes < 2 or dim < 1:
            raise ValueError(f"need n_codes >= 2 and dim >= 1, got {n_codes} and {dim}")
        self.n_codes, self.dim, self.beta, self.restart_every = n_codes, dim, beta, restart_every
        self.codebook = nn.Embedding(n_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / n_codes, 1.0 / n_codes)
        self.register_buffer("usage", torch.zeros(n_codes))      # picks per code since the last restart
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every position: (B, D, h, w) -> (B, h, w)."""
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected a feature map (B, {self.dim}, h, w), got {tuple(z.shape)}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)                     # (B*h*w, D)
        e = self.codebook.weight                                              # (K, D)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)   # ||z - e||^2, (B*h*w, K)
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> their codebook vectors (B, D, h, w)."""
        if codes.dim() != 3 or codes.dtype != torch.long:
            raise ValueError(f"expected integer codes (B, h, w), got {tuple(codes.shape)} of {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.n_codes):
            raise ValueError(f"codes must be in 0..{self.n_codes - 1}")
        return self.codebook(codes).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_q, codes, loss)``: z_q carries the gradient straight through to z; loss per image."""
        codes = self.nearest(z)
        e = self.lookup(codes)
        per_image = lambda d: d.pow(2).flatten(1).sum(1)                      # noqa: E731
        loss = per_image(z.detach() - e) + self.beta * per_image(z - e.detach())   # codebook + commitment
        z_q = z + (e - z).detach()                                            # forward: e; backward: identity
        if self.training:
            self.usage += torch.bincount(codes.flatten(), minlength=self.n_codes).to(self.usage)
            self.steps += 1
            if self.restart_every and int(self.steps) % self.restart_every == 0:
                self.restart_dead_codes(z)
        return z_q, codes, loss

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor) -> int:
        """Move every code unused since the last restart onto a random encoder output of ``z``.

        Returns how many codes moved, and resets the usage counts.
        """
        dead = (self.usage == 0).nonzero().flatten()
        if len(dead):
            flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)
            pick = torch.randint(len(flat), (len(dead),), device=flat.device)
            self.codebook.weight[dead] = flat[pick]
        self.usage.zero_()
        return len(dead)


class VQAutoencoder(nn.Module):
    """Image (B, C, H, W) in [0, 1] <-> a grid of codes (B, H / f, W / f), f = 2^len(channels)."""

    def __init__(self, config: VQConfig = VQConfig()):
        super().__init__()
        c = config
        f = 2 ** len(c.channels)
        if c.image_size % f:
            raise ValueError(f"image_size {c.image_size} cannot be halved {len(c.channels)} times")
        self.config = c
        self.encoder = conv_encoder(c.in_channels, c.channels, c.code_dim, c.groups)
        self.quantizer = VectorQuantizer(c.n_codes, c.code_dim, c.beta, c.restart_every)
        self.decoder = conv_decoder(c.code_dim, c.channels, c.in_channels, c.groups)

    @property
    def grid(self) -> int:
        """Codes per side of the grid (7 for 28x28 images halved twice)."""
        return self.config.image_size // 2 ** len(self.config.channels)

    def _check_images(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"expected images (B, {c.in_channels}, {c.image_size}, {c.image_size}) in [0, 1], "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_hat, codes, vq_loss)`` for images ``x``."""
        self._check_images(x)
        z_q, codes, loss = self.quantizer(self.encoder(x * 2 - 1))           # the net sees [-1, 1]
        return torch.sigmoid(self.decoder(z_q)), codes, loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> their codes (B, grid, grid): the image as tokens."""
        self._check_images(x)
        return self.quantizer.nearest(self.encoder(x * 2 - 1))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, grid, grid) -> images (B, C, H, W) in [0, 1]."""
        if codes.dim() != 3 or codes.shape[1:] != (self.grid, self.grid):
            raise ValueError(f"expected codes (B, {self.grid}, {self.grid}), got {tuple(codes.shape)}")
        return torch.sigmoid(self.decoder(self.quantizer.lookup(codes)))


def vq_loss(model: VQAutoencoder, batch) -> torch.Tensor:
    """Squared error summed over pixels + the quantizer's loss, averaged over images.

    ``batch`` is ``x`` or ``(x, labels)`` (labels are ignored): the face of the book's ``train`` loop.
    """
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    x_hat, _, loss = model(x)
    return ((x_hat - x).pow(2).flatten(1).sum(1) + loss).mean()


def code_perplexity(codes: torch.Tensor, n_codes: int) -> float:
    """exp(entropy) of how often each code is used: the number of codes "in effective use".

    It equals ``n_codes`` when all are used equally and 1 when a single code is used.
    """
    counts = torch.bincount(codes.flatten(), minlength=n_codes).float()
    p = counts / counts.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
