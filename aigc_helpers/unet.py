"""Denoising networks for diffusion models: eps_theta(x_t, t), the noise in x_t.

- ``timestep_embedding``: the step t as a vector, with the Transformer's
  sinusoidal positional encoding (Ho et al., 2020, do the same);
- ``MLPDenoiser``: for points in the plane, an MLP on (x_t, embedding of t);
- ``UNet``: for images, a small U-Net (Ronneberger et al., 2015) in the shape
  of DDPM's: residual conv blocks that each receive the step embedding, a
  downsampling path, an upsampling path, and skip connections between them;
- ``CrossAttention``: how a text prompt steers a U-Net in Stable Diffusion:
  every image position is a query over the prompt's token vectors.

Every network here has the same face: ``net(x_t, t) -> eps`` with ``x_t`` of
shape (B, ...) and ``t`` a (B,) tensor of integer steps; the output has the
shape of ``x_t``. A U-Net with ``n_classes > 0`` is *conditional*: it also takes
``labels`` (B,), integers 0..n_classes-1, or ``n_classes`` for "no label", the
empty condition that classifier-free guidance needs (Ho and Salimans, 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of steps ``t (B,)``, shape ``(B, dim)``.

    Row t equals row t of ``transformer.sinusoidal_encoding(n, dim)``:
    sin(t / 10000^(2i/dim)) in even dimensions, cos(...) in odd ones.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=t.device, dtype=torch.float32) / dim)
    angle = t.float()[:, None] * freq                                      # (B, dim/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)      # (B, dim): sin, cos interleaved


class TimeMLP(nn.Module):
    """Step t -> sinusoidal embedding -> two-layer MLP, as in DDPM."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim))                  # (B, 4 dim)


def _check_t(x: torch.Tensor, t: torch.Tensor) -> None:
    if t.shape != (len(x),):
        raise ValueError(f"expected one step per example, t of shape ({len(x)},), got {tuple(t.shape)}")


class MLPDenoiser(nn.Module):
    """eps_theta for points ``x_t (B, dim)``: an MLP whose hidden layers each add the step embedding."""

    def __init__(self, dim: int = 2, hidden: int = 128, n_layers: int = 3, t_dim: int = 32):
        super().__init__()
        self.time = TimeMLP(t_dim)
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers))
        self.t_proj = nn.ModuleList(nn.Linear(4 * t_dim, hidden) for _ in range(n_layers))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.inp.in_features:
            raise ValueError(f"expected points (B, {self.inp.in_features}), got {tuple(x.shape)}")
        _check_t(x, t)
        emb = self.time(t)                                                 # (B, 4 t_dim)
        h = self.inp(x)                                                    # (B, hidden)
        for layer, proj in zip(self.layers, self.t_proj):
            h = h + layer(F.silu(h + proj(emb)))                           # residual MLP, told the step
        return self.out(F.silu(h))                                         # (B, dim)


@dataclass
class UNetConfig:
    in_channels: int = 1          # grey images
    image_size: int = 8           # sklearn digits (Ho et al.: 32x32 CIFAR-10 up to 256x256)
    base: int = 32                # channels at full resolution (Ho et al.: 128)
    mults: tuple = (1, 2)         # channel multiplier per resolution; len(mults) - 1 halvings (Ho et al.: 1,2,2,2)
    t_dim: int = 32               # size of the sinusoidal step embedding (Ho et al.: 128)
    groups: int = 8               # GroupNorm groups (Ho et al.: 32)
    n_classes: int = 0            # > 0: conditional on a class label (one extra label means "no label")
    context_dim: int = 0          # > 0: conditional on token vectors through cross-attention (SD v1: 768)
    n_head: int = 4               # heads of each cross-attention layer (SD v1: 8)
    attn_levels: tuple | None = None   # levels (0 = full resolution) with cross-attention; None: all.
                                       # The middle block always has it. (SD v1: all but the lowest.)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus a per-channel shift from the step, twice; with a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                              # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]                    # the step, one shift per channel
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class CrossAttention(nn.Module):
    """Image positions attend to the prompt's tokens: h + Attention(Q = norm(h), K = V = proj(context)).

    The feature map (B, C, H, W) becomes H*W queries of size C; the tokens
    (B, L, context_dim) are projected to size C to serve as keys and values.
    Each position takes its own weighted average of the token vectors, so
    different parts of the image can listen to different words. (Stable
    Diffusion wraps this in a "spatial transformer" with self-attention and
    a feed-forward layer too; the cross-attention is the part that reads text.)
    The output projection starts at zero, so the block starts as the identity.
    Set ``keep_weights = True`` to keep the last attention weights in
    ``attn.last_weights`` (B, n_head, H*W, L).
    """

    def __init__(self, channels: int, context_dim: int, n_head: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.context_proj = nn.Linear(context_dim, channels)
        # the explicit softmax(QK^T / sqrt(d)) V: for heads of 4 to 8 values over a few tokens it is
        # faster on a CPU than PyTorch's fused kernel, and it is the same mathematics
        self.attn = MultiHeadAttention(channels, n_head, fast=False)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        self.keep_weights = False

    def forward(self, h: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        B, C, H, W = h.shape
        q = self.norm(h).flatten(2).transpose(1, 2)                        # (B, H*W, C): one query per position
        kv = self.context_proj(context)                                    # (B, L, C): one key/value per token
        mask = None if context_mask is None else context_mask[:, None, None, :]   # (B, 1, 1, L)
        y = self.attn(q, kv, kv, mask=mask, keep_weights=self.keep_weights)       # (B, H*W, C)
        return h + y.transpose(1, 2).reshape(B, C, H, W)


class UNet(nn.Module):
    """A small U-Net: down (ResBlock, then halve), a middle ResBlock, up (double, concat skip, ResBlock).

    With ``context_dim > 0`` a ``CrossAttention`` block follows the middle
    ResBlock and every ResBlock at the levels in ``attn_levels`` (all by default).
    """

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        c = config
        if c.image_size % 2 ** (len(c.mults) - 1):
            raise ValueError(f"image_size {c.image_size} cannot be halved {len(c.mults) - 1} times")
        self.config = c
        emb_dim = 4 * c.t_dim
        chans = [c.base * m for m in c.mults]                              # channels per resolution
        self.time = TimeMLP(c.t_dim)
        # a learned vector per class, added to the step embedding; row n_classes is "no label"
        self.label_emb = nn.Embedding(c.n_classes + 1, emb_dim) if c.n_classes > 0 else None
        self.inp = nn.Conv2d(c.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, ch in enumerate(chans):
            self.down.append(ResBlock(chans[max(i - 1, 0)], ch, emb_dim, c.groups))
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(chans[-1], chans[-1], emb_dim, c.groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c_in = chans[-1] if i == len(chans) - 1 else chans[i + 1]
            self.up.append(ResBlock(c_in + chans[i], chans[i], emb_dim, c.groups))
            if i > 0:
                self.upsample.append(nn.Conv2d(chans[i], chans[i], 3, padding=1))
        self.attn = None
        self.attn_slots: list[bool] = []                                   # per ResBlock, in calling order
        self.attn_level: list[int] = []                                    # per cross-attention layer
        if c.context_dim > 0:
            n = len(chans)
            levels = set(range(n)) if c.attn_levels is None else set(c.attn_levels)
            if not levels <= set(range(n)):
                raise ValueError(f"attn_levels must be in 0..{n - 1} (0 = full resolution), got {c.attn_levels}")
            order = list(range(n)) + [n - 1] + list(reversed(range(n)))   # the level of each ResBlock: down, middle, up
            self.attn_slots = [i == n or level in levels for i, level in enumerate(order)]
            self.attn_level = [level for level, on in zip(order, self.attn_slots) if on]
            self.attn = nn.ModuleList(CrossAttention(chans[level], c.context_dim, c.n_head, c.groups)
                                      for level in self.attn_level)
        self.out_norm = nn.GroupNorm(min(c.groups, chans[0]), chans[0])
        self.out = nn.Conv2d(chans[0], c.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)                                    # start by predicting zero noise
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if x.dim() != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"expected images (B, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}")
        _check_t(x, t)
        emb = self.time(t)                                                 # (B, 4 t_dim)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full_like(t, c.n_classes)                   # no label given: the empty condition
            if labels.shape != t.shape or (labels < 0).any() or (labels > c.n_classes).any():
                values = f" with values {labels.min().item()}..{labels.max().item()}" if labels.numel() else ""
                raise ValueError(f"expected labels of shape ({len(x)},) in 0..{c.n_classes} "
                                 f"({c.n_classes} = no label), got shape {tuple(labels.shape)}{values}")
            emb = emb + self.label_emb(labels)                             # (B, 4 t_dim): step and class
        elif labels is not None:
            raise ValueError("this U-Net is unconditional (n_classes = 0); labels must be None")
        if self.attn is not None:
            if context is None or context.dim() != 3 or context.shape[0] != len(x) or context.shape[2] != c.context_dim:
                raise ValueError(f"this U-Net reads a context of shape ({len(x)}, L, {c.context_dim}); got "
                                 f"{None if context is None else tuple(context.shape)}")
            if context_mask is not None and context_mask.shape != context.shape[:2]:
                raise ValueError(f"context_mask must have shape {tuple(context.shape[:2])}, "
                                 f"got {tuple(context_mask.shape)}")
        elif context is not None:
            raise ValueError("this U-Net has no cross-attention (context_dim = 0); context must be None")
        attn = iter(self.attn) if self.attn is not None else None
        slots = iter(self.attn_slots)

        def block_then_attend(block, h):
            h = block(h, emb)
            return next(attn)(h, context, context_mask) if attn is not None and next(slots) else h

        h = self.inp(x)                                                    # (B, base, H, W)
        skips = []
        for i, block in enumerate(self.down):
            h = block_then_attend(block, h)
            skips.append(h)                                                # kept for the way up
            if i < len(self.downsample):
                h = self.downsample[i](h)                                  # (B, ch, H/2, W/2)
        h = block_then_attend(self.mid, h)
        for i, block in enumerate(self.up):
            h = block_then_attend(block, torch.cat([h, skips.pop()], dim=1))   # skip connection
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))   # (B, ch, 2H, 2W)
        return self.out(F.silu(self.out_norm(h)))                          # (B, C, H, W): predicted noise
