"""The formulas Part V derives, written out, and finite differences that check them.

Every derivation in Part V ends in a formula that a computer can test: a
gradient, a Jacobian, an identity. This module holds those formulas in their
plain form (softmax, log-sum-exp, cross-entropy and their derivatives) and two
tools to check any of them against the definition of a derivative,

    df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps),

the central difference, whose error shrinks like eps^2. Checks run in float64,
where eps = 1e-6 leaves an error near 1e-10 for smooth functions; float32
would drown the difference in rounding.

Reading order: ``logsumexp``, ``softmax``, ``log_softmax``, ``cross_entropy``,
``softmax_jacobian``, ``cross_entropy_grad``, ``normal_kl``, ``numerical_grad``,
``numerical_jacobian``, ``relative_error``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def logsumexp(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log sum_j exp(z_j), computed as m + log sum_j exp(z_j - m) with m = max_j z_j (no overflow)."""
    m = z.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))              # all -inf: leave them alone
    return (m + (z - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(z_i) / sum_j exp(z_j), with the maximum subtracted first (the result is unchanged)."""
    e = (z - z.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log softmax(z)_i = z_i - logsumexp(z): never takes the log of an underflowed 0."""
    return z - logsumexp(z, dim).unsqueeze(dim)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log softmax(logits)[target] = logsumexp(logits) - logits[target].

    ``logits`` (N, V), ``targets`` (N,) integer classes.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, V) and targets (N,), got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    picked = logits.gather(1, targets.long()[:, None]).squeeze(1)           # (N,)
    return (logsumexp(logits) - picked).mean()


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d softmax(z)_i / d z_j = p_i (delta_ij - p_j), i.e. diag(p) - p p^T, from the probabilities p (V,)."""
    if p.dim() != 1:
        raise ValueError(f"expected one probability vector (V,), got shape {tuple(p.shape)}")
    return torch.diag(p) - p[:, None] * p[None, :]                          # (V, V)


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`cross_entropy` with respect to the logits: (softmax(logits) - onehot(targets)) / N."""
    onehot = torch.zeros_like(logits).scatter_(1, targets.long()[:, None], 1.0)
    return (softmax(logits) - onehot) / len(logits)


def normal_kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """KL( N(mean1, var1) || N(mean2, var2) ) for one-dimensional Gaussians, elementwise, in nats.

        KL = 1/2 * ( log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1 )

    Arguments broadcast against each other; a diagonal Gaussian's KL is the sum
    over its coordinates. Variances must be positive.
    """
    mean1, var1, mean2, var2 = (torch.as_tensor(v) for v in (mean1, var1, mean2, var2))
    if (var1 <= 0).any() or (var2 <= 0).any():
        raise ValueError("normal_kl needs positive variances (pass variances, not log-variances)")
    return 0.5 * ((var2 / var1).log() + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def numerical_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central-difference gradient of a scalar function ``f`` at ``x``, in float64, shaped like ``x``."""
    x = x.detach().to(torch.float64).contiguous().clone()        # contiguous: view(-1) below
    out = f(x)
    if out.numel() != 1:
        raise ValueError(f"f must return a scalar, got shape {tuple(out.shape)}; use numerical_jacobian")
    grad = torch.zeros_like(x)
    flat, g = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = float(f(x))
        flat[i] = old - eps
        down = float(f(x))
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return grad


def numerical_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       eps: float = 1e-6) -> torch.Tensor:
    """Central-difference Jacobian (outputs, inputs) of ``f`` at ``x``, both flattened, in float64."""
    x = x.detach().to(torch.float64).contiguous().clone()        # contiguous: view(-1) below
    n_out = f(x).numel()
    jac = torch.zeros(n_out, x.numel(), dtype=torch.float64)
    flat = x.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = f(x).reshape(-1).to(torch.float64)
        flat[i] = old - eps
        down = f(x).reshape(-1).to(torch.float64)
        flat[i] = old
        jac[:, i] = (up - down) / (2 * eps)
    return jac


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(max |b|, tiny): one number for "do these agree?"."""
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
