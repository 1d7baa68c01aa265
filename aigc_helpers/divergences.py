"""How far apart are two distributions? The divergences behind the GAN and the WGAN.

A GAN's discriminator, trained to the end, turns the game into a divergence
between the data and the generator's samples. This module writes those
divergences out for distributions we can hold in a tensor: probabilities on a
finite set, or densities sampled on a uniform grid (pass the grid spacing
``dx``, and every sum becomes a Riemann sum). Conventions, as in Cover and
Thomas: ``0 log 0 = 0`` and ``p log(p / 0) = +inf`` for ``p > 0``.

    KL(p || q) = sum_x p log(p / q)                  Kullback-Leibler, in nats
    JS(p || q) = KL(p || m) / 2 + KL(q || m) / 2     m = (p + q) / 2; at most log 2
    TV(p, q)   = sum_x |p - q| / 2                   total variation; at most 1
    D*(x)      = p_data / (p_data + p_g)             the discriminator that wins the GAN game
    W1(p, q)   = integral |F_p - F_q| dx             Wasserstein-1 (earth mover's) in 1-D

Reading order: ``kl_divergence``, ``js_divergence``, ``tv_distance``,
``optimal_discriminator``, ``optimal_discriminator_logit``, ``gan_value``,
``wasserstein1_cdf``, ``wasserstein1_1d``, ``optimal_critic_1d``, ``normal_w1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- checks


def _pair(p: torch.Tensor, q: torch.Tensor, names: str = "p and q") -> tuple[torch.Tensor, torch.Tensor]:
    p, q = torch.as_tensor(p), torch.as_tensor(q)
    if p.shape != q.shape or p.dim() == 0 or p.shape[-1] == 0:
        raise ValueError(f"{names} must have the same shape (..., K), the support along the last axis; "
                         f"got {tuple(p.shape)} and {tuple(q.shape)}")
    if (p < 0).any() or (q < 0).any() or not (torch.isfinite(p).all() and torch.isfinite(q).all()):
        raise ValueError(f"{names} must be finite and non-negative (probabilities or densities, not logs)")
    return p, q


def _check_dx(dx: float) -> None:
    if not dx > 0:
        raise ValueError(f"dx must be the positive grid spacing (1 for probabilities), got {dx}")


# --------------------------------------------------------------------------- 1. divergences


def kl_divergence(p: torch.Tensor, q: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """KL(p || q) = sum p log(p / q) * dx over the last axis: ``(..., K), (..., K) -> (...)``.

    ``+inf`` where p has mass that q lacks; terms with ``p = 0`` are 0 (and pass
    no NaN gradients back). On a grid, keep it where q is representable: a
    density that underflows to 0 in a far tail where p does not makes KL infinite.
    Not symmetric: KL(p || q) punishes q for missing mass of p, KL(q || p) punishes
    q for mass where p has none.
    """
    _check_dx(dx)
    p, q = _pair(p, q)
    on = p > 0
    log_p = torch.where(on, p, torch.ones_like(p)).log()
    log_q = torch.where(on, q, torch.ones_like(q)).log()                  # q matters only where p > 0
    return (p * (log_p - log_q)).sum(-1) * dx


def js_divergence(p: torch.Tensor, q: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """Jensen-Shannon divergence KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2: symmetric, in [0, log 2].

    Computed as sum [p log(2p / (p + q)) + q log(2q / (p + q))] / 2 * dx: the ratios are at
    most 2, so it stays finite even where a tiny density would round m to 0.
    """
    _check_dx(dx)
    p, q = _pair(p, q)
    total = p + q
    safe_total = torch.where(total > 0, total, torch.ones_like(total))

    def half(a: torch.Tensor) -> torch.Tensor:                             # sum a log(2a / (p + q))
        on = a > 0
        ratio = torch.where(on, 2 * a / safe_total, torch.ones_like(a))
        return (a * ratio.log()).sum(-1)

    return 0.5 * (half(p) + half(q)) * dx


def tv_distance(p: torch.Tensor, q: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """Total variation sum |p - q| / 2 * dx: the largest difference in probability of any event, in [0, 1]."""
    _check_dx(dx)
    p, q = _pair(p, q)
    return 0.5 * (p - q).abs().sum(-1) * dx


# --------------------------------------------------------------------------- 2. the GAN's optimum


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), elementwise; 1/2 where both densities are 0.

    Where neither distribution has mass any value of D is optimal; 1/2 is the
    neutral choice.
    """
    p_data, p_g = _pair(p_data, p_g, "p_data and p_g")
    total = p_data + p_g
    return torch.where(total > 0, p_data / torch.where(total > 0, total, torch.ones_like(total)),
                       torch.full_like(total, 0.5))


def optimal_discriminator_logit(log_p_data: torch.Tensor, log_p_g: torch.Tensor) -> torch.Tensor:
    """The logit of D*: sigmoid(log p_data - log p_g) = D*. The log density ratio, safe from underflow."""
    log_p_data, log_p_g = torch.as_tensor(log_p_data), torch.as_tensor(log_p_g)
    if log_p_data.shape != log_p_g.shape:
        raise ValueError(f"log densities must have the same shape, got {tuple(log_p_data.shape)} "
                         f"and {tuple(log_p_g.shape)}")
    return log_p_data - log_p_g


def gan_value(logit: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """The GAN game's value V(D, G) = sum [p_data log D + p_g log(1 - D)] * dx over the last axis.

    ``logit`` holds the discriminator's logit a(x), D = sigmoid(a), at the same
    points as the densities (``+-inf`` allowed). As in the library's GAN losses,
    log D = -softplus(-a) and log(1 - D) = -softplus(a), which stay accurate
    where D rounds to 0 or 1. ``0 log 0 = 0``: D = 1 costs nothing where p_g = 0.
    ``gan_d_loss`` on samples estimates -V.
    """
    _check_dx(dx)
    p_data, p_g = _pair(p_data, p_g, "p_data and p_g")
    logit = torch.as_tensor(logit)
    if logit.shape != p_data.shape or torch.isnan(logit).any():
        raise ValueError(f"logit must hold the discriminator's logits (no NaN) shaped like the densities "
                         f"{tuple(p_data.shape)}, got {tuple(logit.shape)}")
    zero = torch.zeros_like(p_data)
    real_part = torch.where(p_data > 0, p_data * -F.softplus(-logit), zero)
    fake_part = torch.where(p_g > 0, p_g * -F.softplus(logit), zero)
    return (real_part + fake_part).sum(-1) * dx


# --------------------------------------------------------------------------- 3. Wasserstein-1 in one dimension


def wasserstein1_cdf(cdf_p: torch.Tensor, cdf_q: torch.Tensor, dx: float) -> torch.Tensor:
    """W1 = integral |F_p - F_q| dx from two CDFs on a uniform grid of spacing ``dx``: ``(..., K) -> (...)``."""
    _check_dx(dx)
    cdf_p, cdf_q = _pair(cdf_p, cdf_q, "cdf_p and cdf_q")
    return (cdf_p - cdf_q).abs().sum(-1) * dx


def _merged(x: torch.Tensor, y: torch.Tensor):
    """Sorted merged samples z (n + m,) and the two empirical CDFs on each gap [z_k, z_k+1)."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() == 0 or not torch.isfinite(t).all():
            raise ValueError(f"{name} must be a non-empty 1-D tensor of finite samples, got {t!r}")
    xs, ys = x.sort().values, y.sort().values
    z = torch.cat([xs, ys]).sort().values                                   # (n + m,)
    left = z[:-1]                                                           # (n + m - 1,) left end of each gap
    f_x = torch.searchsorted(xs, left, right=True).to(z.dtype) / len(xs)    # fraction of x <= left
    f_y = torch.searchsorted(ys, left, right=True).to(z.dtype) / len(ys)
    return z, f_x, f_y


def wasserstein1_1d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact W1 between the empirical distributions of 1-D samples ``x (n,)`` and ``y (m,)``.

    Integrates |F_x - F_y| over the gaps between the merged sorted samples.
    For n = m it equals ``(x.sort() - y.sort()).abs().mean()``: in 1-D the
    optimal transport plan matches the samples in order.
    """
    z, f_x, f_y = _merged(x, y)
    return ((f_x - f_y).abs() * z.diff()).sum()


def optimal_critic_1d(real: torch.Tensor, fake: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Values at ``points`` of a 1-Lipschitz critic f attaining E f(real) - E f(fake) = W1 (empirical).

    Its slope is sign(F_fake - F_real) between consecutive merged samples and 0
    outside them, so f rises towards real data and falls towards fakes;
    f(min of all samples) = 0. Differentiable in ``points`` (autograd gives the slope).
    """
    z, f_real, f_fake = _merged(real, fake)
    slope = torch.sign(f_fake - f_real)                                     # (n + m - 1,) each -1, 0 or +1
    at_z = torch.cat([z.new_zeros(1), (slope * z.diff()).cumsum(0)])        # (n + m,) f at the merged samples
    t = points.clamp(z[0], z[-1])                                           # flat outside the samples
    k = (torch.searchsorted(z, t.detach(), right=True) - 1).clamp(0, len(slope) - 1)
    return at_z[k] + slope[k] * (t - z[k])


def normal_w1(mean1, std1, mean2, std2) -> torch.Tensor:
    """W1 between N(mean1, std1^2) and N(mean2, std2^2) in 1-D, in closed form, elementwise.

    The optimal plan pairs equal quantiles, x = mean1 + std1 z and y = mean2 + std2 z,
    so W1 = E|d + s z| with d = mean1 - mean2, s = std1 - std2, z ~ N(0, 1), the mean of
    a folded normal: |s| sqrt(2/pi) exp(-d^2 / 2s^2) + d (1 - 2 Phi(-d / |s|)); |d| when s = 0.
    """
    values = [torch.as_tensor(v) for v in (mean1, std1, mean2, std2)]
    dtype = torch.get_default_dtype()                    # for numbers; tensors keep their precision
    for v in values:
        if v.is_floating_point():
            dtype = torch.promote_types(dtype, v.dtype)
    mean1, std1, mean2, std2 = (v.to(dtype) for v in values)
    if (std1 <= 0).any() or (std2 <= 0).any():
        raise ValueError("normal_w1 needs positive standard deviations (not variances or logs)")
    d, s = mean1 - mean2, (std1 - std2).abs()
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    folded = safe_s * math.sqrt(2 / math.pi) * torch.exp(-d ** 2 / (2 * safe_s ** 2)) \
        + d * (1 - 2 * torch.special.ndtr(-d / safe_s))
    return torch.where(s > 0, folded, d.abs())
