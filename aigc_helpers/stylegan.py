"""StyleGAN ideas in miniature: mapping network, AdaIN, noise injection, style mixing.

A DCGAN feeds its latent code ``z`` into the first layer and lets it flow up
through the convolutions. StyleGAN (Karras et al., 2019) rearranges the
generator around four ideas, all of them in this file:

1. a **mapping network** ``f``: an MLP that turns ``z`` into an intermediate
   latent ``w = f(z)``; the space W need not follow the fixed Gaussian
   density of ``z``, which lets it untangle the factors of variation;
2. **adaptive instance normalisation** (AdaIN): every layer normalises each
   feature map to mean 0 and standard deviation 1, then scales and shifts it
   by a style ``(y_s, y_b)`` computed from ``w`` by a learned affine map,
   ``AdaIN(x, y) = y_s * (x - mu(x)) / sigma(x) + y_b``;
3. **noise injection**: a fresh single-channel noise image is added to every
   layer's features, with a learned strength per channel, for the stochastic
   details (hair, freckles; here: fabric texture);
4. a **constant learned input**: the synthesis network starts from a learned
   4x4 tensor, not from ``z``; all variation enters through styles and noise.

Because each layer gets its own copy of ``w``, different layers may get
*different* ``w``'s: **style mixing**. Layers at low resolution (coarse) set
the overall shape, layers at high resolution (fine) set the details.

The synthesis network here has two styled layers per resolution, 4 -> 8 -> 16
(StyleGAN: 4 -> 8 -> ... -> 1024, 18 styled layers). Each resolution has its
own output ("toRGB") and the image is their upsampled sum (as in StyleGAN2),
which makes **progressive growing** (Karras et al., 2018) simple: training
starts with the 4x4 layers and fades in the finer ones (``synthesize(level=...)``,
:func:`blur_to_level`, ``make_stylegan_step(grow_steps=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gan import gan_d_loss, gan_g_loss

# --------------------------------------------------------------------------- config


@dataclass
class StyleGANConfig:
    z_dim: int = 32                       # latent z (StyleGAN: 512)
    w_dim: int = 32                       # intermediate latent w (StyleGAN: 512)
    mapping_layers: int = 3               # depth of the mapping MLP (StyleGAN: 8)
    channels: tuple[int, ...] = (32, 32, 16)  # feature maps at 4x4, 8x8, 16x16 (StyleGAN: 512 ... 16 up to 1024x1024)
    image_channels: int = 1               # grey images (StyleGAN: 3, RGB)
    mapping_lr_mult: float = 0.1          # the mapping net learns more slowly (StyleGAN: 0.01)

    @property
    def image_size(self) -> int:
        """4 at the start, doubled at every further resolution: 4 * 2^(len(channels) - 1)."""
        return 4 * 2 ** (len(self.channels) - 1)

    @property
    def n_layers(self) -> int:
        """Number of styled layers (each takes one w): two per resolution."""
        return 2 * len(self.channels)

    @property
    def max_level(self) -> int:
        """The growth level of the full network: 0 = 4x4 only, 1 = up to 8x8, ..."""
        return len(self.channels) - 1


# --------------------------------------------------------------------------- the pieces


def adain(x: torch.Tensor, y_s: torch.Tensor, y_b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: ``y_s * (x - mu(x)) / sigma(x) + y_b``.

    ``x`` is ``(N, C, H, W)``; ``y_s`` and ``y_b`` are ``(N, C)``. ``mu`` and
    ``sigma`` are taken per image and per channel over the ``H x W`` positions
    (the biased variance, as ``F.instance_norm``). Afterwards channel ``c`` of
    image ``n`` has mean ``y_b[n, c]`` and standard deviation ``|y_s[n, c]|``.
    """
    if x.dim() != 4:
        raise ValueError(f"adain expects feature maps (N, C, H, W), got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    if y_s.shape != (n, c) or y_b.shape != (n, c):
        raise ValueError(f"styles must have shape ({n}, {c}), got {tuple(y_s.shape)} and {tuple(y_b.shape)}")
    x_norm = F.instance_norm(x, eps=eps)                # (x - mu) / sqrt(var + eps): (N, C, H, W)
    return y_s[:, :, None, None] * x_norm + y_b[:, :, None, None]           # (N, C, H, W)


class AdaIN(nn.Module):
    """AdaIN with its learned affine map "A": ``w (N, w_dim) -> y_s, y_b (N, C)``.

    The bias of ``y_s`` starts at 1 and that of ``y_b`` at 0, so an untrained
    layer starts close to plain instance normalisation.
    """

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.normal_(self.affine.weight, std=1.0 / w_dim ** 0.5)
        with torch.no_grad():
            self.affine.bias[:channels] = 1.0   # y_s starts near 1
            self.affine.bias[channels:] = 0.0   # y_b starts near 0

    def style(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The style ``(y_s, y_b)``, each ``(N, C)``, for ``w`` ``(N, w_dim)``."""
        y_s, y_b = self.affine(w).chunk(2, dim=1)                           # (N, C) each
        return y_s, y_b

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y_s, y_b = self.style(w)
        return adain(x, y_s, y_b)


class NoiseInjection(nn.Module):
    """Add one noise image per sample, scaled by a learned strength per channel "B".

    ``x + scale[c] * noise`` with ``noise`` ``(N, 1, H, W)`` shared by all
    channels. The scales start at 0: the untrained layer is the identity.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))                    # (C,)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if noise.dim() != 4 or noise.shape[0] != x.shape[0] or noise.shape[1] != 1 or noise.shape[2:] != x.shape[2:]:
            raise ValueError(f"noise must have shape ({x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}), "
                             f"got {tuple(noise.shape)}")
        return x + self.scale[None, :, None, None] * noise                  # (N, C, H, W)


class MappingNetwork(nn.Module):
    """The MLP ``f: z -> w``. ``z`` is first scaled to unit mean square (as in StyleGAN)."""

    def __init__(self, z_dim: int, w_dim: int, n_layers: int):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got {n_layers}")
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)       # (N, z_dim), "pixel norm"
        return self.net(z)                                                  # (N, w_dim)


class StyledLayer(nn.Module):
    """One styled layer: [upsample x2] -> [conv 3x3] -> + noise -> bias, LeakyReLU -> AdaIN(w).

    The very first layer has no convolution: it styles the constant input.
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, conv: bool = True, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False) if conv else None
        self.noise = NoiseInjection(out_ch)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.adain = AdaIN(out_ch, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = _up(x)                                                      # (N, C, 2H, 2W)
        if self.conv is not None:
            x = self.conv(x)                                                # (N, out_ch, H, W)
        x = self.noise(x, noise)
        x = F.leaky_relu(x + self.bias[None, :, None, None], 0.2)
        return self.adain(x, w)                                             # (N, out_ch, H, W)


# --------------------------------------------------------------------------- the generator


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)   # (N, C, 2H, 2W)


def blur_to_level(x: torch.Tensor, level: float) -> torch.Tensor:
    """Real images as a network grown to ``level`` sees them (4x4 at level 0, 8x8 at 1, ...).

    Average-pool to the resolution ``4 * 2^level``, upsample back, and blend
    between neighbouring levels for fractional ``level`` (the fade-in).
    """
    size = x.shape[-1]

    def at(k: int) -> torch.Tensor:
        s = 4 * 2 ** k
        if s >= size:
            return x
        low = F.avg_pool2d(x, size // s)                                    # (N, C, s, s)
        return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    k = int(level)
    frac = level - k
    return at(k) if frac == 0 else (1 - frac) * at(k) + frac * at(k + 1)


class StyleGenerator(nn.Module):
    """A miniature style-based generator: ``z -> w`` (mapping), then const -> styled layers -> image.

    Faces:
    - ``sample(n, generator=None)``: ``n`` images ``(n, C, H, W)`` in [0, 1], no grad;
    - ``forward(z)`` (= ``synthesize(mapping(z))`` with fresh noise), used in training;
    - ``synthesize(ws)``: images from one ``w`` per styled layer, ``ws`` ``(n, n_layers, w_dim)``;
    - ``mix(z1, z2, crossover)``: ``w1`` for the layers ``< crossover`` (coarse), ``w2`` for the rest.
    """

    def __init__(self, config: StyleGANConfig | None = None):
        super().__init__()
        self.config = config = config or StyleGANConfig()
        if len(config.channels) < 1:
            raise ValueError("channels needs at least one entry (the 4x4 resolution)")
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
        c0 = config.channels[0]
        self.const = nn.Parameter(torch.randn(1, c0, 4, 4))                 # the learned input (1, C0, 4, 4)
        layers = [StyledLayer(c0, c0, config.w_dim, conv=False),             # 4x4: style the constant
                  StyledLayer(c0, c0, config.w_dim)]                         # 4x4: conv
        for c_in, c_out in zip(config.channels[:-1], config.channels[1:]):
            layers += [StyledLayer(c_in, c_out, config.w_dim, upsample=True),   # 2H x 2W
                       StyledLayer(c_out, c_out, config.w_dim)]
        self.layers = nn.ModuleList(layers)
        # "toRGB": a 1x1 conv per resolution; the image is the sum of their upsampled outputs
        # (the skip generator of StyleGAN2), which also makes progressive growing easy
        self.to_image = nn.ModuleList(nn.Conv2d(c, config.image_channels, 1) for c in config.channels)

    # ---- helpers
    @property
    def device(self) -> torch.device:
        return self.const.device

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer_sizes(self) -> list[int]:
        """The resolution of each styled layer, e.g. ``[4, 4, 8, 8, 16, 16]``."""
        return [4 * 2 ** (i // 2) for i in range(self.n_layers)]

    def _check_n(self, n) -> None:
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One standard-normal noise image ``(n, 1, H, W)`` per styled layer (pass them back to reuse)."""
        self._check_n(n)
        dtype = next(self.parameters()).dtype
        return [torch.randn(n, 1, s, s, generator=generator, device=self.device, dtype=dtype)
                for s in self.layer_sizes()]

    def random_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_n(n)
        return torch.randn(n, self.config.z_dim, generator=generator, device=self.device,
                           dtype=next(self.parameters()).dtype)                            # (n, z_dim)

    def mean_w(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """The centre of W, estimated from ``n`` mapped z's (used by the truncation trick)."""
        with torch.no_grad():
            return self.mapping(self.random_z(n, generator)).mean(0)        # (w_dim,)

    # ---- synthesis
    def synthesize(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None,
                   generator: torch.Generator | None = None, noise_strength: float = 1.0,
                   level: float | None = None) -> torch.Tensor:
        """Images ``(n, C, H, W)`` in [0, 1] from one ``w`` per styled layer.

        Args:
            ws: ``(n, n_layers, w_dim)``; ``ws[:, i]`` styles layer ``i`` (0 = coarsest).
            noise: a list from :meth:`make_noise` to fix the noise; fresh noise (from ``generator``) if None.
            noise_strength: multiplies every noise image (0 switches the noise off).
            level: progressive growing, used in training: resolution ``k`` (0 = 4x4) contributes
                with weight ``clip(level - k + 1, 0, 1)``; ``None`` (the default) is the full network.
        """
        L, d = self.n_layers, self.config.w_dim
        if ws.dim() != 3 or ws.shape[1:] != (L, d):
            raise ValueError(f"ws must have shape (n, {L}, {d}) (one w per styled layer), got {tuple(ws.shape)}")
        n = ws.shape[0]
        if n == 0:
            raise ValueError("ws holds no samples (n = 0)")
        if noise is None:
            noise = self.make_noise(n, generator)
        if len(noise) != L:
            raise ValueError(f"need one noise image per styled layer ({L}), got {len(noise)}")
        level = self.config.max_level if level is None else level
        x = self.const.expand(n, -1, -1, -1)                                # (n, C0, 4, 4)
        out = None
        for k in range(len(self.to_image)):                                 # resolution 4 * 2^k
            alpha = 1.0 if k == 0 else min(max(level - k + 1, 0.0), 1.0)    # fade-in weight
            if alpha == 0.0:
                break                                                       # not grown yet
            for i in (2 * k, 2 * k + 1):
                x = self.layers[i](x, ws[:, i], noise_strength * noise[i])  # (n, C_k, s_k, s_k)
            rgb = self.to_image[k](x)                                       # (n, C, s_k, s_k)
            out = rgb if out is None else _up(out) + alpha * rgb
        size = self.config.image_size
        if out.shape[-1] != size:                                           # not fully grown: upsample
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        return torch.sigmoid(out)                                          # (n, C, H, W) in (0, 1)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """The same ``w`` ``(n, w_dim)`` for every layer: ``(n, n_layers, w_dim)``."""
        return w[:, None, :].expand(-1, self.n_layers, -1)

    def mix_ws(self, w1: torch.Tensor, w2: torch.Tensor, crossover: int | torch.Tensor) -> torch.Tensor:
        """``(n, n_layers, w_dim)`` with ``w1`` in the layers ``< crossover`` and ``w2`` from there on.

        ``crossover`` is an int in ``[0, n_layers]`` or a tensor ``(n,)`` of them (one per sample).
        """
        L = self.n_layers
        if w1.shape != w2.shape:
            raise ValueError(f"w1 and w2 must have the same shape, got {tuple(w1.shape)} and {tuple(w2.shape)}")
        crossover = torch.as_tensor(crossover, device=w1.device)
        if crossover.min() < 0 or crossover.max() > L:
            raise ValueError(f"crossover must lie in [0, {L}], got {crossover.tolist()}")
        layer = torch.arange(L, device=w1.device)                           # (L,)
        use_w1 = layer[None, :] < crossover.reshape(-1, 1)                  # (n or 1, L)
        return torch.where(use_w1[:, :, None], self.broadcast(w1), self.broadcast(w2))   # (n, L, w_dim)

    def mix(self, z1: torch.Tensor, z2: torch.Tensor, crossover: int, noise: list[torch.Tensor] | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Style mixing: the coarse layers ``< crossover`` take their style from ``z1``, the rest from ``z2``.

        ``crossover = 0`` is ``z2`` everywhere, ``crossover = n_layers`` is ``z1`` everywhere.
        """
        if z1.shape != z2.shape:
            raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
        ws = self.mix_ws(self.mapping(z1), self.mapping(z2), crossover)     # (n, L, w_dim)
        return self.synthesize(ws, noise=noise, generator=generator)

    def forward(self, z: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``z`` ``(n, z_dim)`` -> images ``(n, C, H, W)`` in [0, 1] (with gradients)."""
        return self.synthesize(self.broadcast(self.mapping(z)), noise=noise)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, truncation: float = 1.0) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1]; deterministic given ``generator``.

        ``truncation`` < 1 pulls every ``w`` towards the centre of W
        (``w_avg + psi (w - w_avg)``, the truncation trick): less variety, fewer odd samples.
        """
        if labels is not None:
            raise ValueError("this StyleGenerator is unconditional: call sample(n) without labels")
        self._check_n(n)
        if not 0.0 <= truncation <= 1.0:
            raise ValueError(f"truncation must lie in [0, 1], got {truncation}")
        was_training = self.training
        self.eval()
        z = self.random_z(n, generator)                                     # (n, z_dim)
        noise = self.make_noise(n, generator)                               # before mean_w: the same for every psi
        w = self.mapping(z)                                                 # (n, w_dim)
        if truncation < 1.0:
            w_avg = self.mean_w(generator=generator)
            w = w_avg + truncation * (w - w_avg)
        images = self.synthesize(self.broadcast(w), noise=noise)
        self.train(was_training)
        return images


# --------------------------------------------------------------------------- a discriminator for 16x16


class SmallDiscriminator(nn.Module):
    """A small convolutional discriminator: images ``(N, C, S, S)`` in [0, 1] -> logits ``(N,)``.

    Stride-2 convolutions halve the image down to 4x4. Before the final layer a
    **minibatch standard deviation** feature (Karras et al., 2018; kept in
    StyleGAN) is appended: how much the batch varies, averaged into one number.
    A generator that collapses to one image gets caught by it.
    """

    def __init__(self, image_size: int = 16, image_channels: int = 1, width: int = 32):
        super().__init__()
        if image_size < 4 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 4, got {image_size}")
        self.image_size, self.image_channels = image_size, image_channels
        layers: list[nn.Module] = []
        c_in, c, s = image_channels, width, image_size
        while s > 4:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]   # S -> S/2
            c_in, c, s = c, 2 * c, s // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c_in + 1, c_in, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Flatten(), nn.Linear(c_in * 4 * 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        want = (self.image_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images (N, {want[0]}, {want[1]}, {want[2]}), got {tuple(x.shape)}")
        h = self.body(2 * x - 1)                                            # (N, C, 4, 4)
        spread = h.std(dim=0, unbiased=False).mean() if len(h) > 1 else h.new_zeros(())  # the batch's variety
        h = torch.cat([h, spread.expand(len(h), 1, 4, 4)], dim=1)          # (N, C + 1, 4, 4)
        return self.head(h).squeeze(1)                                      # (N,) logits


# --------------------------------------------------------------------------- training


def make_stylegan_step(gen: StyleGenerator, disc: nn.Module, *, lr: float = 2e-3,
                       betas: tuple[float, float] = (0.0, 0.99), mixing_prob: float = 0.9,
                       grow_steps: int = 0, generator: torch.Generator | None = None):
    """One alternating GAN update as a ``step_fn(batch, step)`` for :func:`aigc_helpers.train.train`.

    The losses are the GAN losses of :mod:`aigc_helpers.gan`: the discriminator
    minimises :func:`~aigc_helpers.gan.gan_d_loss`, the generator the
    non-saturating :func:`~aigc_helpers.gan.gan_g_loss`. With probability
    ``mixing_prob`` a fake image is made with **style-mixing regularisation**
    (two z's, a random crossover layer), which keeps neighbouring layers from
    relying on sharing one style. The mapping network learns
    ``config.mapping_lr_mult`` times more slowly than the rest (StyleGAN: 0.01).
    Adam with ``betas=(0, 0.99)`` as in StyleGAN.

    **Progressive growing** (Karras et al., 2018): during the first
    ``grow_steps`` steps the growth level rises linearly from 0 (4x4) to full
    size; the generator's finer outputs fade in (``synthesize(level=...)``)
    and the discriminator sees real images blurred to the same level
    (:func:`blur_to_level`). ``grow_steps=0`` trains the full network from the start.
    The step logs ``level`` besides the two losses.
    """
    mapping = list(gen.mapping.parameters())
    mapping_ids = {id(p) for p in mapping}
    rest = [p for p in gen.parameters() if id(p) not in mapping_ids]
    opt_g = torch.optim.Adam([{"params": rest, "lr": lr},
                              {"params": mapping, "lr": lr * gen.config.mapping_lr_mult}], betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=betas)
    L, top = gen.n_layers, gen.config.max_level

    def fake_batch(n: int, level: float) -> torch.Tensor:
        z1, z2 = gen.random_z(n, generator), gen.random_z(n, generator)
        w1, w2 = gen.mapping(z1), gen.mapping(z2)                           # (n, w_dim)
        crossover = torch.randint(1, L, (n,), generator=generator, device=gen.device)     # (n,)
        mixed = torch.rand(n, generator=generator, device=gen.device) < mixing_prob
        crossover = torch.where(mixed, crossover, torch.full_like(crossover, L))          # L: no mixing
        return gen.synthesize(gen.mix_ws(w1, w2, crossover), generator=generator, level=level)

    calls = [0]                                                             # steps taken, over every train() call

    def step_fn(batch, step: int) -> dict[str, float]:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch      # (n, C, H, W)
        n = real.shape[0]
        level = top * min(1.0, calls[0] / grow_steps) if grow_steps > 0 else float(top)
        calls[0] += 1                                   # train() may be called in several chunks
        if level < top:
            real = blur_to_level(real, level)                               # (n, C, H, W), blurred
        # discriminator: push real up, fake down
        with torch.no_grad():
            fake = fake_batch(n, level)
        d_loss = gan_d_loss(disc(real), disc(fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: make the discriminator call fakes real
        g_loss = gan_g_loss(disc(fake_batch(n, level)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return {"loss": d_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(), "level": level}

    return step_fn
