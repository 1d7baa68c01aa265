"""Convolution by hand and a small CNN classifier.

``conv2d`` spells out what ``nn.Conv2d`` computes (cross-correlation, stride,
padding) with plain loops over the kernel, so a reader can check the two agree.
``blur`` is the simplest useful convolution: a Gaussian kernel that softens
images (the vision chapter uses it to show what the judge thinks of blurry
samples). ``SmallCNN`` is the classifier of the vision chapter; trained on a
data set it becomes that data set's *image judge* (see :mod:`aigc_helpers.metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int = 1, padding: int = 0) -> torch.Tensor:
    """2-D convolution (strictly: cross-correlation, as in every DL library), by hand.

    out[b, o, i, j] = bias[o] + sum_{c, u, v} x[b, c, i*s + u, j*s + v] * weight[o, c, u, v]

    Args: ``x`` (B, C_in, H, W); ``weight`` (C_out, C_in, kH, kW); ``bias`` (C_out,).
    Returns (B, C_out, H_out, W_out) with H_out = (H + 2p - kH) // s + 1.
    """
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"expected x (B, C, H, W) and weight (O, C, kH, kW), got {tuple(x.shape)} and {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but the kernel expects {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if stride < 1 or padding < 0:
        raise ValueError(f"need stride >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))  # zeros around the border
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    if kh > H or kw > W:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {H}x{W} (padded) image; use more padding")
    h_out, w_out = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = torch.zeros(B, O, h_out, w_out, dtype=x.dtype, device=x.device)
    for u in range(kh):             # slide the kernel: one (u, v) offset at a time
        for v in range(kw):
            patch = x[:, :, u: u + stride * h_out: stride, v: v + stride * w_out: stride]  # (B, C, h_out, w_out)
            out += torch.einsum("bchw,oc->bohw", patch, weight[:, :, u, v])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel ``(2r+1, 2r+1)``, radius ``r = ceil(3 sigma)`` by default."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = max(1, math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-r, r + 1, dtype=torch.float32)                # (2r+1,)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]                                  # (2r+1, 2r+1), sums to 1


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``images`` (N, C, H, W), each channel on its own; ``sigma=0`` returns a copy.

    The border is padded by repeating edge pixels, so the output keeps the size
    and brightness of the input.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images.clone()
    C = images.shape[1]
    k = gaussian_kernel(sigma).to(images)                           # (K, K)
    r = k.shape[-1] // 2
    x = F.pad(images, (r, r, r, r), mode="replicate")               # (N, C, H+2r, W+2r)
    return F.conv2d(x, k.expand(C, 1, -1, -1), groups=C)            # (N, C, H, W)


@dataclass
class CNNConfig:
    in_channels: int = 1
    image_size: int = 28       # 8 for sklearn digits, 28 for Fashion-MNIST
    n_classes: int = 10
    width: int = 16            # channels of the first block (LeNet-5: 6; VGG: 64)
    n_features: int = 128      # size of the feature vector used by the classifier-FID
    dropout: float = 0.2

    def __post_init__(self):
        if self.image_size < 4:
            raise ValueError(f"image_size must be >= 4 (two 2x2 poolings), got {self.image_size}")
        if min(self.in_channels, self.n_classes, self.width, self.n_features) < 1:
            raise ValueError(f"channels, classes, width and features must be positive: {self}")


class SmallCNN(nn.Module):
    """Two conv blocks and a small MLP head.

    [conv(3x3) -> BN -> ReLU -> maxpool(2)] twice, flatten, a hidden layer of
    ``n_features`` units, and a linear layer to the class scores.
    ``features(x)`` returns the hidden layer: the feature vector the judge uses
    for the classifier-FID.
    """

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),                                                  # (w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),                                                  # (2w, H/4, W/4)
            nn.Flatten(),                                                     # (2w * H/4 * W/4,)
            nn.Linear(2 * w * (config.image_size // 4) ** 2, config.n_features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.n_features, config.n_classes))

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {want[0]}, {want[1]}, {want[2]}), got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden features ``(B, n_features)``."""
        self._check(x)
        return self.body(x)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """``(logits, loss)``: the same face as the language models; ``loss`` is None without targets."""
        logits = self.head(self.features(x))
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (the model is put in ``eval`` mode)."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need as many labels as images (and at least one), got {len(x)} images and {len(y)} labels")
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        logits, _ = model(x[i:i + batch_size].to(device))
        correct += (logits.argmax(-1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / len(x)
