"""Gaussian mixtures and their exact diffusion: data whose perfect denoiser is known.

A diffusion model trains a network eps_theta(x_t, t) to tell the noise in

    x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,    eps ~ N(0, I),    ab_t = alpha_bar_t.

For real data the best possible network is unknown, so when samples look wrong
one cannot tell whether the sampler or the training is to blame. For a mixture
of Gaussians the best network is known in closed form. Adding independent
Gaussian noise to a Gaussian gives a Gaussian, so the noised data are again a
mixture, with the same weights:

    q_0(x) = sum_k w_k N(x; mu_k, diag(s_k^2))
    q_t(x) = sum_k w_k N(x; sqrt(ab_t) mu_k, diag(ab_t s_k^2 + 1 - ab_t)).

The noise prediction with the smallest mean squared error is the conditional
mean E[eps | x_t], and Tweedie's formula turns it into the score of q_t:

    eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - ab_t) * grad_x log q_t(x_t).

Covariances are diagonal (one standard deviation per component and
coordinate), which covers points on a line and the book's 2-D toy mixtures.
Everything is computed in float64.

Reading order: ``GaussianMixture`` (``sample``, ``log_prob``,
``responsibilities``, ``score``; then the diffusion: ``diffuse``,
``optimal_eps``, ``mean_x0``; then the 1-D tools ``cdf`` and
``wasserstein_1d``), ``OptimalDenoiser`` (eps* with the face of a denoiser
network, ``net(x_t, t)``, ready to plug into ``aigc_helpers.diffusion.DDPM``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .divergences import wasserstein1_cdf


def _as_alpha_bar(alpha_bar, n: int, device) -> torch.Tensor:
    """``alpha_bar`` (a number, a 0-d tensor or one value per point (n,)) as a float64 tensor (1,) or (n,)."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=device)
    if ab.dim() == 0:
        ab = ab.reshape(1)
    if ab.dim() != 1 or len(ab) not in (1, n):
        raise ValueError(f"alpha_bar must be a number or one value per point, shape ({n},); "
                         f"got shape {tuple(ab.shape)}")
    if ((ab < 0) | (ab > 1)).any():
        raise ValueError("alpha_bar must lie in [0, 1] (1: the data, 0: pure noise)")
    return ab


class GaussianMixture:
    """q(x) = sum_k w_k N(x; mu_k, diag(s_k^2)) in D dimensions, with its exact diffusion.

    ``weights`` (K,) positive, summing to 1; ``means`` (K, D), or (K,) for points
    on a line; ``stds`` a number, (K,) (one per component) or (K, D). Methods
    that take ``alpha_bar`` describe the noised data q_t instead of q_0; it may
    be a number or one value per point.
    """

    def __init__(self, weights, means, stds):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() == 1:
            means = means[:, None]                                         # (K,) -> (K, 1): points on a line
        if weights.dim() != 1 or means.dim() != 2 or len(means) != len(weights):
            raise ValueError(f"expected weights (K,) and means (K, D) or (K,), got {tuple(weights.shape)} "
                             f"and {tuple(means.shape)}")
        if (weights <= 0).any() or abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {weights.tolist()}")
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.dim() == 1:
            stds = stds[:, None]                                           # one std per component
        try:
            stds = torch.broadcast_to(stds, means.shape).clone()
        except RuntimeError:
            raise ValueError(f"stds must be a number, (K,) or (K, D) = {tuple(means.shape)}, "
                             f"got shape {tuple(stds.shape)}") from None
        if (stds <= 0).any():
            raise ValueError("stds must be positive (standard deviations, not variances)")
        self.weights, self.means, self.stds = weights, means, stds          # (K,), (K, D), (K, D)

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, D={self.dim})"

    def _points(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as float64 (N, D); on a line (D = 1) a flat (N,) is accepted too."""
        x = torch.as_tensor(x).to(torch.float64)
        if x.dim() == 1 and self.dim == 1:
            x = x[:, None]
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (N, {self.dim})"
                             + (" or (N,)" if self.dim == 1 else "") + f", got {tuple(x.shape)}")
        return x

    def _noised(self, x: torch.Tensor, alpha_bar) -> tuple[torch.Tensor, torch.Tensor]:
        """Means (N or 1, K, D) and variances (N or 1, K, D) of q_t's components (q_0's if alpha_bar is None)."""
        mu, var = self.means.to(x.device), self.stds.to(x.device) ** 2       # (K, D)
        if alpha_bar is None:
            return mu[None], var[None]
        ab = _as_alpha_bar(alpha_bar, len(x), x.device)[:, None, None]        # (N or 1, 1, 1)
        return ab.sqrt() * mu, ab * var + (1 - ab)

    def _component_log_probs(self, x: torch.Tensor, alpha_bar):
        """log w_k + log N(x; m_k, v_k) for every point and component (N, K), and the m_k, v_k used."""
        m, v = self._noised(x, alpha_bar)                                  # (N or 1, K, D)
        diff = x[:, None, :] - m                                           # (N, K, D)
        log_normal = -0.5 * (diff ** 2 / v + (2 * math.pi * v).log()).sum(-1)   # (N, K)
        return self.weights.to(x.device).log() + log_normal, m, v

    @staticmethod
    def _normalise(log_p: torch.Tensor) -> torch.Tensor:
        """Rows of exp(log_p) scaled to sum to 1: a softmax over the components, each row's largest subtracted first."""
        e = (log_p - log_p.amax(dim=1, keepdim=True)).exp()                # (N, K), each row's largest is 1
        return e / e.sum(dim=1, keepdim=True)

    def sample(self, n: int, generator: torch.Generator | None = None,
               return_labels: bool = False):
        """``n`` points (n, D) from q_0; with ``return_labels`` also each point's component (n,)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)   # (n,)
        z = torch.randn((n, self.dim), dtype=torch.float64, generator=generator)            # (n, D)
        x = self.means[labels] + self.stds[labels] * z
        return (x, labels) if return_labels else x

    def log_prob(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """log q_0(x), or log q_t(x) for the given alpha_bar: (N,)."""
        return torch.logsumexp(self._component_log_probs(self._points(x), alpha_bar)[0], dim=1)

    def responsibilities(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """P(component k | x) under q_0 (or q_t): (N, K), rows sum to 1."""
        return self._normalise(self._component_log_probs(self._points(x), alpha_bar)[0])

    def score(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """grad_x log q(x) = sum_k P(k | x) (m_k - x) / v_k, shaped like ``x``.

        Each component's own score is (m_k - x) / v_k; the mixture's is their
        average weighted by the responsibilities.
        """
        pts = self._points(x)
        log_p, m, v = self._component_log_probs(pts, alpha_bar)            # (N, K); (N or 1, K, D) twice
        r = self._normalise(log_p)                                         # (N, K) responsibilities
        s = (r[:, :, None] * (m - pts[:, None, :]) / v).sum(1)             # (N, D)
        return s.reshape(x.shape)

    # ----------------------------------------------------------------- the diffusion

    def diffuse(self, alpha_bar: float) -> "GaussianMixture":
        """q_t as a mixture of its own: means sqrt(ab) mu_k, variances ab s_k^2 + 1 - ab, same weights."""
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if ab.dim() != 0:
            raise ValueError("diffuse takes one alpha_bar; for one per point, pass alpha_bar to the methods")
        _as_alpha_bar(ab, 1, ab.device)
        return GaussianMixture(self.weights, ab.sqrt() * self.means, (ab * self.stds ** 2 + 1 - ab).sqrt())

    def optimal_eps(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """The best noise prediction E[eps | x_t] = -sqrt(1 - ab) grad log q_t(x_t), shaped like ``x_t``."""
        pts = self._points(x_t)
        ab = _as_alpha_bar(alpha_bar, len(pts), pts.device)[:, None]       # (N or 1, 1)
        return (-(1 - ab).sqrt() * self.score(pts, ab.squeeze(1))).reshape(x_t.shape)

    def mean_x0(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """E[x_0 | x_t], computed component by component (not through the score), shaped like ``x_t``.

        Within component k, x_0 and x_t are jointly Gaussian, so
        E[x_0 | x_t, k] = mu_k + sqrt(ab) s_k^2 / (ab s_k^2 + 1 - ab) * (x_t - sqrt(ab) mu_k);
        the mixture averages these with the responsibilities P(k | x_t).
        """
        pts = self._points(x_t)
        ab = _as_alpha_bar(alpha_bar, len(pts), pts.device)[:, None, None]  # (N or 1, 1, 1)
        mu, var = self.means.to(pts.device), self.stds.to(pts.device) ** 2  # (K, D)
        gain = ab.sqrt() * var / (ab * var + 1 - ab)                       # (N or 1, K, D)
        per_k = mu + gain * (pts[:, None, :] - ab.sqrt() * mu)             # (N, K, D)
        r = self.responsibilities(pts, ab.reshape(-1))                     # (N, K)
        return (r[:, :, None] * per_k).sum(1).reshape(x_t.shape)

    # ----------------------------------------------------------------- one dimension

    def cdf(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """P(X <= x) for a mixture on a line (D = 1): (N,)."""
        if self.dim != 1:
            raise ValueError(f"cdf is for mixtures on a line (D = 1), this one has D = {self.dim}")
        pts = self._points(x)
        m, v = self._noised(pts, alpha_bar)                                # (N or 1, K, 1)
        z = (pts[:, None, :] - m) / v.sqrt()                               # (N, K, 1)
        return (self.weights.to(pts.device) * torch.special.ndtr(z[..., 0])).sum(1)

    def wasserstein_1d(self, samples: torch.Tensor, alpha_bar=None, n_grid: int = 100_001) -> float:
        """W_1 between the samples' empirical distribution and q (D = 1): the integral of |F_n - F| dx.

        The integral runs over a grid that covers the samples and 10 standard
        deviations around every component (``divergences.wasserstein1_cdf``).
        """
        if self.dim != 1:
            raise ValueError(f"wasserstein_1d is for mixtures on a line (D = 1), this one has D = {self.dim}")
        pts = self._points(samples)[:, 0]
        if len(pts) == 0:
            raise ValueError("wasserstein_1d needs at least one sample")
        m, v = self._noised(pts, alpha_bar)
        lo = min(pts.min().item(), (m - 10 * v.sqrt()).min().item())
        hi = max(pts.max().item(), (m + 10 * v.sqrt()).max().item())
        grid = torch.linspace(lo, hi, n_grid, dtype=torch.float64)
        f_emp = torch.searchsorted(pts.sort().values, grid, right=True) / len(pts)   # (n_grid,)
        return wasserstein1_cdf(f_emp, self.cdf(grid, alpha_bar), (hi - lo) / (n_grid - 1)).item()


class OptimalDenoiser(nn.Module):
    """The perfect noise predictor for a Gaussian mixture: ``net(x_t, t) -> eps*(x_t, t)``.

    It has the face of the book's denoisers (``MLPDenoiser``): points ``x_t (B, D)``
    and step indices ``t (B,)`` counted from 0, as in ``aigc_helpers.diffusion``.
    ``alpha_bars (T,)`` must be the schedule the sampler uses, e.g.
    ``DDPM(...).schedule.alpha_bars``. It has no parameters: nothing to train.
    """

    def __init__(self, mixture: GaussianMixture, alpha_bars: torch.Tensor):
        super().__init__()
        alpha_bars = torch.as_tensor(alpha_bars, dtype=torch.float64)
        if alpha_bars.dim() != 1 or len(alpha_bars) == 0:
            raise ValueError(f"alpha_bars must be a non-empty 1-D tensor, got shape {tuple(alpha_bars.shape)}")
        _as_alpha_bar(alpha_bars, len(alpha_bars), alpha_bars.device)      # each in [0, 1]
        self.register_buffer("weights", mixture.weights.clone())
        self.register_buffer("means", mixture.means.clone())
        self.register_buffer("stds", mixture.stds.clone())
        self.register_buffer("alpha_bars", alpha_bars.clone())

    @property
    def mixture(self) -> GaussianMixture:
        return GaussianMixture(self.weights, self.means, self.stds)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        D = self.means.shape[1]
        if x.dim() != 2 or x.shape[1] != D:
            raise ValueError(f"expected points (B, {D}), got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device).long()
        if t.shape != (len(x),) or (t < 0).any() or (t >= len(self.alpha_bars)).any():
            raise ValueError(f"expected one step per point, shape ({len(x)},), each in 0..{len(self.alpha_bars) - 1}")
        eps = self.mixture.optimal_eps(x.double(), self.alpha_bars.double()[t])   # (B, D)
        return eps.to(x.dtype)
