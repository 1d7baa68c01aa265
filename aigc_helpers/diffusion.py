"""Denoising diffusion probabilistic models (DDPM; Ho et al., 2020).

The forward process adds a little Gaussian noise at each of T steps,

    q(x_t | x_{t-1}) = N( sqrt(1 - beta_t) x_{t-1}, beta_t I ),

until nothing of the data is left. With alpha_t = 1 - beta_t and
alpha_bar_t = alpha_1 * ... * alpha_t, any step can be reached in one jump:

    q(x_t | x_0) = N( sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I ),
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I).

A network eps_theta(x_t, t) learns to tell the noise eps from x_t (the "simple"
loss, a mean squared error), and sampling runs the chain backwards from pure
noise: each step estimates x_0, then draws x_{t-1} from the Gaussian posterior
q(x_{t-1} | x_t, x_0) with that estimate plugged in.

Reading order: ``linear_betas`` and ``cosine_betas`` (two noise schedules),
``NoiseSchedule`` (the closed-form jump, the posterior, x_0 from the noise),
``DDPM`` (a denoiser network plus a schedule: ``loss`` to train, ``sample``
to generate, ``sample_ddim`` to generate in fewer steps, ``predict_eps`` with
classifier-free guidance for a conditional net) and ``ddpm_loss_fn`` (the
loss in the face of the book's ``train`` loop).

Indexing: the papers count steps 1..T; the code counts 0..T-1, so
``alpha_bars[0]`` is alpha_bar_1 and ``t = T - 1`` is the last, noisiest step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s schedule: beta grows linearly from ``beta_start`` to ``beta_end`` over T steps.

    Their values (1e-4, 0.02) are meant for T = 1000; for another T they are
    rescaled by 1000 / T so that the total amount of noise stays about the same.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    scale = 1000 / T
    if T == 1:                                            # the one step is the last (linspace would give the first)
        return torch.tensor([min(beta_end * scale, 0.999)])
    return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), T, dtype=torch.float64).float()


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol and Dhariwal's (2021) schedule: alpha_bar(t) = cos^2( (t/T + s) / (1 + s) * pi/2 ), normalised.

    It destroys information more evenly over the steps than the linear schedule,
    which wastes many of its last steps on images that are already pure noise.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]                                                  # (T+1,), alpha_bar(0) = 1
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta).float()


def scaled_linear_betas(T: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable Diffusion's schedule: sqrt(beta) grows linearly from sqrt(beta_start) to sqrt(beta_end).

    Meant for T = 1000 and rescaled by 1000 / T like ``linear_betas``. It stops
    short of pure noise: alpha_bar_T is about 0.0047, so the last step keeps a
    trace of the data. The x_0 estimate at that step divides by sqrt(alpha_bar_T),
    about 0.07 rather than nearly 0, which keeps unclipped latents in range.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    scale = 1000 / T
    if T == 1:                                            # as in linear_betas: the one step is the last one
        return torch.tensor([min(beta_end * scale, 0.999)])
    root = torch.linspace((beta_start * scale) ** 0.5, min(beta_end * scale, 0.999) ** 0.5, T, dtype=torch.float64)
    return (root ** 2).float()


def _expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example values ``v (B,)`` shaped to broadcast against ``x (B, ...)``."""
    return v.view(-1, *([1] * (x.dim() - 1)))


class NoiseSchedule(nn.Module):
    """The numbers of a diffusion process: betas, alphas and alpha_bars, and what follows from them.

    A module only so that its tensors follow ``.to(device)`` (they are buffers, not parameters).
    """

    def __init__(self, betas: torch.Tensor):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float32)
        if betas.dim() != 1 or len(betas) == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("every beta must lie strictly between 0 and 1")
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas.double(), 0).float()
        alpha_bars_prev = torch.cat([torch.ones(1), alpha_bars[:-1]])       # alpha_bar_{t-1}; 1 before step 1
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", alpha_bars)
        self.register_buffer("alpha_bars_prev", alpha_bars_prev)
        # q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, posterior_var)   (Ho et al., eq. 6-7)
        self.register_buffer("posterior_var", betas * (1 - alpha_bars_prev) / (1 - alpha_bars))
        self.register_buffer("coef_x0", alpha_bars_prev.sqrt() * betas / (1 - alpha_bars))
        self.register_buffer("coef_xt", alphas.sqrt() * (1 - alpha_bars_prev) / (1 - alpha_bars))

    @classmethod
    def linear(cls, T: int = 1000, **kw) -> "NoiseSchedule":
        return cls(linear_betas(T, **kw))

    @classmethod
    def cosine(cls, T: int = 1000, **kw) -> "NoiseSchedule":
        return cls(cosine_betas(T, **kw))

    @classmethod
    def scaled_linear(cls, T: int = 1000, **kw) -> "NoiseSchedule":
        return cls(scaled_linear_betas(T, **kw))

    @property
    def T(self) -> int:
        return len(self.betas)

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).long()
        if t.dim() == 0:
            t = t.expand(len(x))
        if t.shape != (len(x),):
            raise ValueError(f"expected one step per example, shape ({len(x)},), got {tuple(t.shape)}")
        if (t < 0).any() or (t >= self.T).any():
            raise ValueError(f"steps must lie in 0..{self.T - 1} (T = {self.T}), "
                             f"got values from {t.min().item()} to {t.max().item()}")
        return t

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) of x_t, one per step: (T,)."""
        return self.alpha_bars / (1 - self.alpha_bars)

    def q_step(self, x_prev: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """One forward step x_{t-1} -> x_t: sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise."""
        t = self._check_t(t, x_prev)
        b = _expand(self.betas[t], x_prev)
        return (1 - b).sqrt() * x_prev + b.sqrt() * noise

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """The jump x_0 -> x_t in closed form: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        t = self._check_t(t, x0)
        ab = _expand(self.alpha_bars[t], x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, xt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Invert the jump: the x_0 that ``xt`` would come from if ``eps`` were its noise."""
        t = self._check_t(t, xt)
        ab = _expand(self.alpha_bars[t], xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0), the Gaussian one step back; variance 0 at t = 0."""
        t = self._check_t(t, xt)
        mean = _expand(self.coef_x0[t], xt) * x0 + _expand(self.coef_xt[t], xt) * xt
        return mean, _expand(self.posterior_var[t], xt)


@dataclass
class DDPMConfig:
    T: int = 200                 # diffusion steps (Ho et al.: 1000)
    schedule: str = "cosine"     # "linear" (Ho et al.), "cosine" (Nichol and Dhariwal, 2021)
                                 # or "scaled_linear" (Stable Diffusion)
    images: bool = True          # data are images in [0, 1]: trained on [-1, 1], x_0 estimates clipped there
    sigma: str = "posterior"     # sampling noise: "posterior" (sigma^2 = beta-tilde_t) or "beta" (sigma^2 = beta_t)
    p_uncond: float = 0.0        # conditional nets: share of training labels replaced by "no label"
                                 # (Ho and Salimans, 2022: 0.1 or 0.2), so one net learns both


class DDPM(nn.Module):
    """A denoiser ``net(x_t, t) -> eps`` with its noise schedule.

    ``loss(x)`` is the training objective; ``sample(n)`` runs the reverse chain
    (DDPM's ancestral sampler) and ``sample_ddim(n, steps)`` the DDIM sampler
    (Song, Meng and Ermon, 2021), which can skip steps. With ``config.images``
    it has the book's image generator face:
    ``sample(n, labels=None, generator=None) -> (n, C, H, W)`` in [0, 1].

    A conditional net (a ``UNet`` with ``n_classes > 0``) also takes labels;
    sampling then accepts ``labels`` and a classifier-free ``guidance_scale`` s:
    eps = eps(x_t, no label) + s * (eps(x_t, label) - eps(x_t, no label)),
    Stable Diffusion's convention (s = 1: plain conditional, s = 0: unconditional).

    Any other condition works the same way if the net says what its "no
    condition" is: a net with methods ``null_condition(cond)`` (the empty
    condition, same shape) and ``check_condition(cond, n)`` (validates, returns
    a tensor) can take, say, the token ids of a prompt (B, L) as its ``labels``;
    the empty prompt then plays the part of "no label".
    """

    def __init__(self, net: nn.Module, data_shape: tuple[int, ...], config: DDPMConfig = DDPMConfig()):
        super().__init__()
        if config.schedule not in ("linear", "cosine", "scaled_linear"):
            raise ValueError(f"schedule must be 'linear', 'cosine' or 'scaled_linear', got {config.schedule!r}")
        if config.sigma not in ("posterior", "beta"):
            raise ValueError(f"sigma must be 'posterior' or 'beta', got {config.sigma!r}")
        if not 0 <= config.p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {config.p_uncond}")
        self.net = net
        self.config = config
        self.data_shape = tuple(data_shape)
        self.schedule = getattr(NoiseSchedule, config.schedule)(config.T)

    @property
    def device(self) -> torch.device:
        return self.schedule.betas.device

    @property
    def n_classes(self) -> int:
        """Number of classes a class-conditional net knows; 0 otherwise."""
        return getattr(getattr(self.net, "config", None), "n_classes", 0)

    @property
    def conditional(self) -> bool:
        """Whether the net takes a condition (class labels, or e.g. the token ids of a prompt)."""
        return self.n_classes > 0 or hasattr(self.net, "null_condition")

    def _null(self, labels: torch.Tensor) -> torch.Tensor:
        """The "no condition" that goes with ``labels``: label n_classes, or the net's own."""
        if hasattr(self.net, "null_condition"):
            return self.net.null_condition(labels)
        return torch.full_like(labels, self.n_classes)

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected data of shape (B, {', '.join(map(str, self.data_shape))}), "
                             f"got {tuple(x.shape)}")
        return x * 2 - 1 if self.config.images else x

    def _to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.config.images else x

    def _check_labels(self, labels, n: int) -> torch.Tensor | None:
        if labels is None:
            return None
        if not self.conditional:
            raise ValueError("this DDPM is unconditional; labels must be None")
        if hasattr(self.net, "check_condition"):
            return self.net.check_condition(torch.as_tensor(labels, device=self.device), n)
        labels = torch.as_tensor(labels, device=self.device).long()
        if labels.shape != (n,) or (labels < 0).any() or (labels >= self.n_classes).any():
            raise ValueError(f"expected {n} labels in 0..{self.n_classes - 1}, got shape {tuple(labels.shape)}")
        return labels

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Ho et al.'s simple loss: || eps - eps_theta(x_t, t) ||^2 at a random step t per example.

        For a conditional net, a share ``config.p_uncond`` of the labels is
        replaced by "no label" (label dropout), so that the same net also
        learns the unconditional model that guidance needs.
        """
        x0 = self._to_model_space(x)
        t = torch.randint(0, self.schedule.T, (len(x0),), device=x0.device, generator=generator)   # (B,)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)                          # (B, ...)
        xt = self.schedule.q_sample(x0, t, eps)
        if labels is None:
            return F.mse_loss(self.net(xt, t), eps)
        labels = self._check_labels(labels.to(x0.device), len(x0))
        drop = torch.rand(len(x0), device=x0.device, generator=generator) < self.config.p_uncond     # (B,)
        drop = drop.view(-1, *[1] * (labels.dim() - 1))                   # (B, 1, ...) for token ids
        labels = torch.where(drop, self._null(labels), labels)            # "no label"
        return F.mse_loss(self.net(xt, t, labels), eps)

    def predict_eps(self, xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                    guidance_scale: float = 1.0, uncond_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The net's noise estimate; with labels and ``guidance_scale`` s != 1, the classifier-free mix.

        eps = eps(x_t, t, no label) + s * (eps(x_t, t, label) - eps(x_t, t, no label))
        (Ho and Salimans, 2022, eq. 6, with their w = s - 1).
        ``uncond_labels`` replaces "no label" in the mix: a *negative prompt*,
        which guidance then steers away from.
        """
        if labels is None:
            if guidance_scale != 1:
                raise ValueError("guidance needs labels to steer towards")
            return self.net(xt, t)
        empty = self._null(labels) if uncond_labels is None else uncond_labels
        if guidance_scale == 1:
            return self.net(xt, t, labels)
        if guidance_scale == 0:
            return self.net(xt, t, empty)                                 # the labels are ignored
        both = self.net(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([labels, empty]))   # one batch, two calls' worth
        eps_cond, eps_uncond = both.chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    def _x0_and_eps(self, xt, tt, labels, guidance_scale, uncond_labels=None):
        """x_0 estimate (clipped for images) and the noise consistent with it."""
        eps = self.predict_eps(xt, tt, labels, guidance_scale, uncond_labels)
        x0 = self.schedule.predict_x0(xt, tt, eps)
        if self.config.images:
            x0 = x0.clamp(-1, 1)                                          # an image lives in [-1, 1]
            ab = _expand(self.schedule.alpha_bars[tt], xt)
            eps = (xt - ab.sqrt() * x0) / (1 - ab).sqrt()                 # the noise that goes with the clipped x_0
        return x0, eps

    @torch.no_grad()
    def denoise_step(self, xt: torch.Tensor, t: int, generator: torch.Generator | None = None,
                     labels: torch.Tensor | None = None, guidance_scale: float = 1.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step x_t -> x_{t-1}. Returns ``(x_{t-1}, x0_estimate)`` in model space."""
        tt = torch.full((len(xt),), t, device=xt.device, dtype=torch.long)
        x0, _ = self._x0_and_eps(xt, tt, labels, guidance_scale)
        mean, var = self.schedule.posterior(x0, xt, tt)
        if t == 0:
            return mean, x0                                               # the last step adds no noise
        if self.config.sigma == "beta":
            var = _expand(self.schedule.betas[tt], xt)
        noise = torch.randn(xt.shape, device=xt.device, generator=generator)
        return mean + var.sqrt() * noise, x0

    def _start(self, n, labels, x_T, generator):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        labels = self._check_labels(labels, n)
        if x_T is None:
            return torch.randn((n, *self.data_shape), device=self.device, generator=generator), labels
        if tuple(x_T.shape) != (n, *self.data_shape):
            raise ValueError(f"x_T must have shape {(n, *self.data_shape)}, got {tuple(x_T.shape)}")
        return x_T.to(self.device), labels

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None, guidance_scale: float = 1.0,
               return_path: bool = False, path_every: int | None = None, x_T: torch.Tensor | None = None):
        """Draw ``n`` samples by running the chain from x_T ~ N(0, I) down to x_0, all T steps.

        ``x_T`` gives the starting noise (default: drawn from ``generator``).
        With ``return_path`` it also returns the states along the way, every
        ``path_every`` steps (default T // 10), as a list of ``(t, x_t, x0_estimate)``
        in data space.
        """
        x, labels = self._start(n, labels, x_T, generator)
        was_training = self.training
        self.eval()
        every = path_every or max(1, self.schedule.T // 10)
        path = [(self.schedule.T, self._to_data_space(x), None)] if return_path else None
        for t in reversed(range(self.schedule.T)):
            x, x0 = self.denoise_step(x, t, generator, labels, guidance_scale)
            if return_path and (t % every == 0):
                path.append((t, self._to_data_space(x), self._to_data_space(x0)))
        self.train(was_training)
        out = self._to_data_space(x)
        return (out, path) if return_path else out

    def ddim_steps(self, steps: int) -> list[int]:
        """The ``steps`` steps DDIM visits, evenly spaced from T - 1 down to 0."""
        if not 1 <= steps <= self.schedule.T:
            raise ValueError(f"steps must be in 1..{self.schedule.T}, got {steps}")
        return torch.linspace(self.schedule.T - 1, 0, steps).round().long().tolist()

    @torch.no_grad()
    def sample_ddim(self, n: int, steps: int = 20, eta: float = 0.0, labels=None,
                    generator: torch.Generator | None = None, guidance_scale: float = 1.0,
                    x_T: torch.Tensor | None = None, uncond_labels=None) -> torch.Tensor:
        """DDIM sampling (Song, Meng and Ermon, 2021, eq. 12) in ``steps`` network calls.

        From step t to an earlier step s, with x_0 and eps estimated at t:

            x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z,
            sigma = eta * sqrt((1 - ab_s) / (1 - ab_t)) * sqrt(1 - ab_t / ab_s).

        ``eta = 0`` is deterministic: the same ``x_T`` always gives the same sample.
        ``eta = 1`` with ``steps = T`` is DDPM's sampler with sigma^2 = beta-tilde.
        For ``eta > 0`` with a given ``x_T``, seed ``generator`` differently from
        the generator that made ``x_T``, or the first fresh noise will be x_T itself.
        ``uncond_labels`` (a negative prompt) replaces "no label" in guidance.
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        x, labels = self._start(n, labels, x_T, generator)
        if uncond_labels is not None:
            if labels is None:
                raise ValueError("uncond_labels only make sense with labels")
            uncond_labels = self._check_labels(uncond_labels, n)
        was_training = self.training
        self.eval()
        visit = self.ddim_steps(steps)
        for i, t in enumerate(visit):
            s = visit[i + 1] if i + 1 < len(visit) else -1                # the next (earlier) step; -1 means x_0
            tt = torch.full((n,), t, device=x.device, dtype=torch.long)
            x0, eps = self._x0_and_eps(x, tt, labels, guidance_scale, uncond_labels)
            ab_t = self.schedule.alpha_bars[t]
            ab_s = self.schedule.alpha_bars[s] if s >= 0 else torch.ones_like(ab_t)
            sigma = eta * ((1 - ab_s) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_s).sqrt()
            x = ab_s.sqrt() * x0 + (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps
            if s >= 0 and eta > 0:
                x = x + sigma * torch.randn(x.shape, device=x.device, generator=generator)
        self.train(was_training)
        return self._to_data_space(x)


def ddpm_loss_fn(model: DDPM, batch) -> torch.Tensor:
    """``loss_fn`` for ``aigc_helpers.train.train``: the batch is ``x`` or ``(x, labels)``.

    Labels (or token ids) are used only when the model's net is conditional.
    """
    if isinstance(batch, (tuple, list)):
        x, labels = batch[0], batch[1]
        return model.loss(x, labels if model.conditional else None)
    return model.loss(batch)
