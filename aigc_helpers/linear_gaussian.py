"""A linear Gaussian latent-variable model: a VAE whose every quantity is exact.

    z ~ p(z) = N(0, I_k),        x | z ~ p(x | z) = N(W z + b, sigma^2 I_d)

This is probabilistic PCA (Tipping and Bishop, 1999): a VAE whose decoder is
linear. Because a linear map of a Gaussian is Gaussian, the two quantities a
real VAE cannot compute have closed forms (Bishop, 2006, section 2.3.3):

    p(x)     = N( b, W W^T + sigma^2 I )                        the evidence
    p(z | x) = N( S W^T (x - b) / sigma^2, S ),                 the posterior,
               S = (I + W^T W / sigma^2)^{-1}

So every statement about the evidence lower bound (ELBO) can be checked to
float64 precision: for any Gaussian q(z) = N(m, C),

    ELBO(q) = E_q[log p(x | z)] - KL(q || p(z))  = log p(x) - KL(q || p(z | x)).

Reading order: ``mvn_log_prob`` and ``mvn_kl`` (the Gaussian log-density and
the KL divergence between two Gaussians with full covariances), then
``LinearGaussian``: ``sample``, ``log_prior``, ``log_likelihood``,
``log_joint``, ``marginal`` and ``log_prob`` (the evidence), ``posterior``,
``expected_log_likelihood`` (the reconstruction term in closed form) and
``elbo``.

Shapes: a batch of observations is (B, d), latents are (..., B, k) so that
several samples per observation can be scored at once; a covariance is (k, k),
shared by the batch, or (B, k, k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(cov)
    if (info != 0).any():
        raise ValueError("the covariance must be symmetric positive definite (its Cholesky factorisation failed)")
    return L


def mvn_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov) = -1/2 [ n log 2 pi + log det cov + (x - mean)^T cov^{-1} (x - mean) ].

    ``x`` and ``mean`` (..., n) broadcast against each other, ``cov`` (n, n) or
    (..., n, n). Returns (...). Computed through the Cholesky factor L of cov:
    log det cov = 2 sum log diag L, and the quadratic form is |L^{-1}(x - mean)|^2.
    """
    n = x.shape[-1]
    if mean.shape[-1] != n or cov.shape[-2:] != (n, n):
        raise ValueError(f"x (..., n), mean (..., n) and cov (n, n) must agree in n, got {tuple(x.shape)}, "
                         f"{tuple(mean.shape)} and {tuple(cov.shape)}")
    L = _cholesky(cov)                                                        # (..., n, n)
    diff = x - mean                                                           # (..., n)
    batch = torch.broadcast_shapes(diff.shape[:-1], L.shape[:-2])
    diff, L = diff.expand(*batch, n), L.expand(*batch, n, n)
    white = torch.linalg.solve_triangular(L, diff.unsqueeze(-1), upper=False).squeeze(-1)   # L^{-1} diff
    log_det = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)                  # (...)
    return -0.5 * (n * math.log(2 * math.pi) + log_det + white.pow(2).sum(-1))


def mvn_kl(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """KL( N(mean1, cov1) || N(mean2, cov2) ) in nats, for n-dimensional Gaussians with full covariances.

        KL = 1/2 [ tr(cov2^{-1} cov1) + (mean2 - mean1)^T cov2^{-1} (mean2 - mean1) - n
                   + log det cov2 - log det cov1 ]

    Means (..., n), covariances (n, n) or (..., n, n), all broadcasting. Returns (...).
    With diagonal covariances it is the sum over coordinates of the one-dimensional
    ``mathcheck.normal_kl``; against N(0, I) it is the VAE's ``vae.gaussian_kl``.
    """
    n = mean1.shape[-1]
    if mean2.shape[-1] != n or cov1.shape[-2:] != (n, n) or cov2.shape[-2:] != (n, n):
        raise ValueError(f"means (..., n) and covariances (n, n) must agree in n, got {tuple(mean1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mean2.shape)} and {tuple(cov2.shape)}")
    L1, L2 = _cholesky(cov1), _cholesky(cov2)
    batch = torch.broadcast_shapes(mean1.shape[:-1], mean2.shape[:-1], L1.shape[:-2], L2.shape[:-2])
    L1, L2 = L1.expand(*batch, n, n), L2.expand(*batch, n, n)
    diff = (mean2 - mean1).expand(*batch, n)                                  # (..., n)
    M = torch.linalg.solve_triangular(L2, L1, upper=False)                    # L2^{-1} L1: tr(cov2^-1 cov1) = |M|^2
    white = torch.linalg.solve_triangular(L2, diff.unsqueeze(-1), upper=False).squeeze(-1)   # L2^{-1} diff
    log_det1 = 2 * L1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    log_det2 = 2 * L2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (M.pow(2).sum((-2, -1)) + white.pow(2).sum(-1) - n + log_det2 - log_det1)


@dataclass
class LinearGaussian:
    """z ~ N(0, I_k), x | z ~ N(W z + b, sigma^2 I_d): probabilistic PCA, with exact evidence and posterior.

    ``W`` (d, k) is the decoder's weight, ``b`` (d,) its bias, ``sigma`` > 0 the
    noise's standard deviation. Build a random one with ``LinearGaussian.random``.
    """

    W: torch.Tensor          # (d, k)
    b: torch.Tensor          # (d,)
    sigma: float = 1.0       # observation noise (a VAE's decoder variance)

    def __post_init__(self):
        if self.W.dim() != 2:
            raise ValueError(f"W must be a matrix (d, k), got shape {tuple(self.W.shape)}")
        if self.b.shape != self.W.shape[:1]:
            raise ValueError(f"b must have shape (d,) = ({self.W.shape[0]},), got {tuple(self.b.shape)}")
        if not float(self.sigma) > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        self.sigma = float(self.sigma)

    @classmethod
    def random(cls, d: int, k: int, sigma: float = 1.0, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> "LinearGaussian":
        """A model with W and b drawn from N(0, 1) (fixed by ``generator``)."""
        W = torch.randn(d, k, generator=generator, dtype=dtype)
        b = torch.randn(d, generator=generator, dtype=dtype)
        return cls(W, b, sigma)

    @property
    def d(self) -> int:
        return self.W.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[1]

    def _check_x(self, x: torch.Tensor) -> None:
        if x.dim() < 1 or x.shape[-1] != self.d:
            raise ValueError(f"expected observations of shape (B, {self.d}), got {tuple(x.shape)}")

    def _check_z(self, z: torch.Tensor) -> None:
        if z.dim() < 1 or z.shape[-1] != self.k:
            raise ValueError(f"expected latents of shape (..., {self.k}), got {tuple(z.shape)}")

    def sample(self, n: int, generator: torch.Generator | None = None, return_latents: bool = False):
        """Draw ``n`` observations x (n, d) by ancestral sampling; with ``return_latents``, also their z (n, k)."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        z = torch.randn(n, self.k, generator=generator, dtype=self.W.dtype)        # (n, k) from the prior
        noise = torch.randn(n, self.d, generator=generator, dtype=self.W.dtype)    # (n, d)
        x = z @ self.W.T + self.b + self.sigma * noise                             # (n, d)
        return (x, z) if return_latents else x

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = log N(z; 0, I), (..., k) -> (...)."""
        self._check_z(z)
        return -0.5 * (self.k * math.log(2 * math.pi) + z.pow(2).sum(-1))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) = log N(x; W z + b, sigma^2 I): x (B, d) and z (..., B, k) -> (..., B)."""
        self._check_x(x)
        self._check_z(z)
        resid = x - (z @ self.W.T + self.b)                                        # (..., B, d)
        return -0.5 * (self.d * math.log(2 * math.pi * self.sigma ** 2) + resid.pow(2).sum(-1) / self.sigma ** 2)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x | z) + log p(z): x (B, d) and z (..., B, k) -> (..., B)."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def marginal(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (d,) and covariance (d, d) of p(x) = N(b, W W^T + sigma^2 I)."""
        eye = torch.eye(self.d, dtype=self.W.dtype)
        return self.b, self.W @ self.W.T + self.sigma ** 2 * eye

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The exact evidence log p(x), (B, d) -> (B,)."""
        self._check_x(x)
        mean, cov = self.marginal()
        return mvn_log_prob(x, mean, cov)

    def posterior_precision(self) -> torch.Tensor:
        """The posterior's inverse covariance I + W^T W / sigma^2 (k, k); it does not depend on x."""
        return torch.eye(self.k, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma ** 2

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior p(z | x) = N(mean, cov): x (B, d) -> mean (B, k), cov (k, k).

        Completing the square in z in log p(x | z) + log p(z) gives the precision
        I + W^T W / sigma^2 and the mean cov W^T (x - b) / sigma^2.
        """
        self._check_x(x)
        cov = torch.linalg.inv(self.posterior_precision())                        # (k, k)
        cov = 0.5 * (cov + cov.T)                                                  # symmetric to the last bit
        mean = (x - self.b) @ self.W @ cov / self.sigma ** 2                       # (B, k); cov is symmetric
        return mean, cov

    def expected_log_likelihood(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """E_{z ~ N(mean, cov)}[log p(x | z)] in closed form (the reconstruction term), -> (B,).

            = -d/2 log(2 pi sigma^2) - ( |x - b - W mean|^2 + tr(W cov W^T) ) / (2 sigma^2)

        ``x`` (B, d), ``mean`` (B, k), ``cov`` (k, k) or (B, k, k).
        """
        self._check_x(x)
        self._check_z(mean)
        if cov.shape[-2:] != (self.k, self.k):
            raise ValueError(f"expected a covariance of shape ({self.k}, {self.k}) or (B, {self.k}, {self.k}), "
                             f"got {tuple(cov.shape)}")
        resid = x - (mean @ self.W.T + self.b)                                     # (B, d)
        spread = (self.W @ cov * self.W).sum((-2, -1))                             # tr(W cov W^T), () or (B,)
        return -0.5 * (self.d * math.log(2 * math.pi * self.sigma ** 2)
                       + (resid.pow(2).sum(-1) + spread) / self.sigma ** 2)

    def elbo(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """The ELBO of q(z | x) = N(mean, cov) in closed form: E_q[log p(x | z)] - KL(q || N(0, I)), -> (B,)."""
        zero = torch.zeros(self.k, dtype=mean.dtype)
        prior_cov = torch.eye(self.k, dtype=mean.dtype)
        return self.expected_log_likelihood(x, mean, cov) - mvn_kl(mean, cov, zero, prior_cov)
