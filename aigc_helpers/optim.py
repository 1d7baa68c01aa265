"""Muon: momentum, then orthogonalise the update of each weight matrix (Jordan et al., 2024).

AdamW scales every coordinate of the gradient on its own. Muon treats a 2-D
weight matrix as a whole: it keeps a momentum of the gradient, as SGD does,
and replaces that matrix ``G = U S V^T`` by (roughly) ``U V^T``, the nearest
matrix whose singular values are all 1. Every direction of the update then
moves by the same amount, so the few directions that dominate a raw gradient
no longer drown the rest. ``U V^T`` is computed without an SVD, by a few
Newton-Schulz iterations of matrix products (:func:`orthogonalize`).

Muon is meant for the hidden weight matrices only. Embeddings, the output
layer, biases and LayerNorm gains keep AdamW; :func:`muon` builds one
optimizer that does both, so the book's ``train`` loop and its learning-rate
schedule work unchanged. References: K. Jordan et al., "Muon: An optimizer for
hidden layers in neural networks" (2024, kellerjordan.github.io/posts/muon);
J. Liu et al., "Muon is scalable for LLM training" (2025, arXiv:2502.16982).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# Coefficients of the quintic iteration x -> a x + b x^3 + c x^5 on the singular values
# (Jordan et al., 2024): tuned to push every value in (0, 1] quickly into roughly [0.7, 1.2].
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately ``U V^T`` for ``G = U S V^T`` (a 2-D tensor), by Newton-Schulz iterations.

    After scaling ``G`` so that its singular values are at most 1, each step maps
    ``X -> a X + b (X X^T) X + c (X X^T)^2 X``, which applies the odd polynomial
    ``a s + b s^3 + c s^5`` to every singular value ``s`` and leaves ``U`` and ``V`` alone.
    """
    if G.dim() != 2:
        raise ValueError(f"orthogonalize expects a matrix, got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFS
    X = G / (G.norm() + 1e-7)                   # Frobenius norm >= largest singular value
    transposed = X.shape[0] > X.shape[1]
    if transposed:                              # iterate on the smaller Gram matrix X X^T
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups with ``muon=True``; AdamW (PyTorch's formula) for the others.

    Muon group options: ``lr``, ``momentum`` (Nesterov), ``weight_decay``, ``ns_steps``.
    AdamW group options: ``lr``, ``betas``, ``eps``, ``weight_decay``.
    """

    def __init__(self, param_groups, lr: float = 0.02, momentum: float = 0.95, betas=(0.9, 0.99),
                 eps: float = 1e-8, weight_decay: float = 0.0, ns_steps: int = 5):
        defaults = dict(lr=lr, momentum=momentum, betas=betas, eps=eps, weight_decay=weight_decay,
                        ns_steps=ns_steps, muon=False)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon groups may hold 2-D weight matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                p.mul_(1 - lr * wd)                                       # decoupled weight decay
                if group["muon"]:
                    buf = state.setdefault("momentum", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    update = orthogonalize(p.grad + group["momentum"] * buf, group["ns_steps"])  # Nesterov
                    scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5          # same step size for tall matrices
                    p.add_(update, alpha=-lr * scale)
                else:
                    beta1, beta2 = group["betas"]
                    state["step"] = t = state.get("step", 0) + 1
                    m = state.setdefault("exp_avg", torch.zeros_like(p))
                    v = state.setdefault("exp_avg_sq", torch.zeros_like(p))
                    m.lerp_(p.grad, 1 - beta1)
                    v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denom = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                    p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))
        return loss


def muon(model: nn.Module, hidden: Callable[[str], bool], lr: float = 0.02, adam_lr: float = 3e-3,
         weight_decay: float = 0.1, betas=(0.9, 0.99), momentum: float = 0.95) -> Muon:
    """One optimizer for ``model``: Muon for the 2-D parameters whose name satisfies ``hidden``,
    AdamW for the rest (weight decay on matrices and embeddings, none on biases and gains).

    For the book's GPT, ``hidden=lambda name: name.startswith("blocks.")``; for the GRU,
    ``lambda name: name.startswith("rnn.")``.
    """
    named = list(model.named_parameters())
    inner = [p for n, p in named if p.dim() == 2 and hidden(n)]
    inner_ids = {id(p) for p in inner}
    rest = [p for _, p in named if id(p) not in inner_ids]
    if not inner:
        raise ValueError("no 2-D parameter matched `hidden`; Muon would have nothing to do")
    groups = [dict(params=inner, muon=True, lr=lr, momentum=momentum, weight_decay=0.0),
              dict(params=[p for p in rest if p.dim() >= 2], lr=adam_lr, betas=betas, weight_decay=weight_decay),
              dict(params=[p for p in rest if p.dim() < 2], lr=adam_lr, betas=betas, weight_decay=0.0)]
    return Muon([g for g in groups if g["params"]])
