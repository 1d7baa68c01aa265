"""Logistic regression, an MLP, and a Gaussian generative classifier.

The first chapter compares three classifiers of points ``x`` with ``D`` features:

- :class:`LogisticRegression` scores classes with one linear layer: a straight
  decision boundary. A *discriminative* model: it learns ``p(y | x)`` only.
- :class:`MLP` adds hidden layers with a non-linearity, so its boundary can
  bend. Also discriminative; the smallest *deep* learning model.
- :class:`GaussianClassConditional` is *generative*: it models ``p(x, y) =
  p(y) p(x | y)`` with one Gaussian per class, fitted in closed form by
  maximum likelihood. Bayes' rule turns it into a classifier, and because it
  holds a full model of the data it can also *sample* new labelled points.

The two networks return class scores (logits) ``(N, C)`` and train with
``F.cross_entropy``; the Gaussian model is fitted with ``fit(x, y)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _check_points(x, d: int | None, who: str) -> torch.Tensor:
    """Validate a batch of points: a floating (N, D) tensor with N >= 1, finite values."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who} expects a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{who} expects points of shape (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{who} got an empty batch (0 points)")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{who} expects {d} features per point, got {x.shape[1]}")
    if not x.is_floating_point():
        raise ValueError(f"{who} expects floating-point features, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{who} got NaN or infinite values")
    return x


class _Classifier(nn.Module):
    """What both networks share: input checks, probabilities and hard predictions."""

    in_features: int

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        return _check_points(x, self.in_features, type(self).__name__)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``softmax(logits)``, shape (N, C); rows sum to 1."""
        return F.softmax(self(x), dim=-1)   # (N, C)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class of each point, shape (N,), dtype long."""
        return self(x).argmax(dim=-1)       # (N,)


class LogisticRegression(_Classifier):
    """Multinomial logistic regression: ``logits = x W^T + b``, ``p(y | x) = softmax(logits)``.

    With ``n_classes=2`` this is exactly binary logistic regression,
    ``p(y=1 | x) = sigmoid(w^T x + b)`` with ``w = W[1] - W[0]`` and ``b = b[1] - b[0]``,
    because ``softmax([z0, z1])[1] = sigmoid(z1 - z0)``. Its decision boundary
    (where two classes tie) is a straight line (a hyperplane in ``D`` dimensions).
    """

    def __init__(self, in_features: int = 2, n_classes: int = 2):
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.in_features, self.n_classes = in_features, n_classes
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) of shape (N, C) for points ``x`` of shape (N, D)."""
        return self.linear(self._check(x))   # (N, C)


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass
class MLPConfig:
    in_features: int = 2                   # 2-D toy points (MNIST pixels: 784)
    hidden: tuple[int, ...] = (32, 32)     # widths of the hidden layers (classic MNIST MLP: (500, 300))
    n_classes: int = 2
    activation: str = "relu"               # "relu", "tanh" or "gelu"


class MLP(_Classifier):
    """A multi-layer perceptron: ``[Linear -> activation] * len(hidden)``, then ``Linear``.

    Each hidden layer computes ``h = act(h_prev W^T + b)``; the last layer gives
    class logits ``(N, C)``. With ``hidden=()`` it reduces to logistic regression.
    The non-linearity is what lets the decision boundary bend (Rumelhart et al., 1986).
    """

    def __init__(self, config: MLPConfig | None = None):
        super().__init__()
        config = config or MLPConfig()
        if not isinstance(config.in_features, int) or config.in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {config.in_features!r}")
        if not isinstance(config.n_classes, int) or config.n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {config.n_classes!r}")
        hidden = tuple(config.hidden)
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be positive ints, got {config.hidden!r}")
        if config.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {config.activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.config = config
        self.in_features, self.n_classes = config.in_features, config.n_classes
        layers: list[nn.Module] = []
        width = config.in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[config.activation]()]   # (N, width) -> (N, h)
            width = h
        layers.append(nn.Linear(width, config.n_classes))                        # (N, width) -> (N, C)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) of shape (N, C) for points ``x`` of shape (N, D)."""
        return self.net(self._check(x))   # (N, C)


# --------------------------------------------------------------------------- the generative model


class GaussianClassConditional:
    """A generative classifier: ``p(y = k) = pi_k`` and ``p(x | y = k) = N(x; mu_k, Sigma_k)``.

    ``fit(x, y)`` sets every parameter by maximum likelihood, in closed form::

        pi_k    = N_k / N
        mu_k    = mean of the points of class k
        Sigma_k = (1 / N_k) sum_i (x_i - mu_k)(x_i - mu_k)^T   (+ reg * I)

    ``predict_proba`` applies Bayes' rule,
    ``p(y = k | x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j)``
    (the boundary between two classes is a quadratic curve: this is quadratic
    discriminant analysis). ``sample`` draws new labelled points:
    ``y ~ Categorical(pi)``, then ``x = mu_y + L_y z`` with ``z ~ N(0, I)`` and
    ``L_y L_y^T = Sigma_y`` (Cholesky).

    Parameters are kept in float64 for accuracy; outputs are float32, except
    :meth:`log_joint`, which the other methods build on and which stays float64.
    ``reg`` (>= 0) is added to each covariance's diagonal so that it stays
    invertible even when a class's points are (nearly) collinear.
    """

    def __init__(self, reg: float = 1e-6):
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not (0 <= reg < math.inf):
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        self.reg = float(reg)
        self.means: torch.Tensor | None = None    # (K, D)
        self.covs: torch.Tensor | None = None     # (K, D, D)
        self.priors: torch.Tensor | None = None   # (K,)
        self._chol: torch.Tensor | None = None    # (K, D, D), Sigma_k = L_k L_k^T

    def __repr__(self) -> str:
        if self._chol is None:
            return f"GaussianClassConditional(reg={self.reg}, not fitted)"
        return f"GaussianClassConditional(reg={self.reg}, n_classes={self.n_classes}, n_features={self.n_features})"

    # ----------------------------------------------------------------- parameters

    @classmethod
    def from_params(cls, means, covs, priors=None) -> "GaussianClassConditional":
        """A model with given parameters (no data): ``means`` (K, D), ``covs`` (K, D, D),
        ``priors`` (K,) summing to 1 (default: uniform). Handy as a known "true" distribution."""
        model = cls(reg=0.0)
        model._set(means, covs, priors)
        return model

    def _set(self, means, covs, priors) -> None:
        if means is None or covs is None:
            raise ValueError("need both means (K, D) and covs (K, D, D)")
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if means.dim() != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape (K, D, D) = {(k, d, d)}, got {tuple(covs.shape)}")
        if not torch.allclose(covs, covs.transpose(1, 2), atol=1e-8):
            raise ValueError("every covariance matrix must be symmetric")
        priors = torch.full((k,), 1.0 / k, dtype=torch.float64) if priors is None else torch.as_tensor(priors, dtype=torch.float64)
        if priors.shape != (k,) or (priors < 0).any() or abs(float(priors.sum()) - 1.0) > 1e-6:
            raise ValueError(f"priors must be {k} non-negative numbers summing to 1, got {priors.tolist()}")
        chol, info = torch.linalg.cholesky_ex(covs)   # (K, D, D) lower-triangular, Sigma = L L^T
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(f"covariance of class(es) {bad} is not positive definite; "
                             "use more points per class or a larger reg")
        self.means, self.covs, self.priors, self._chol = means, covs, priors, chol

    @property
    def n_classes(self) -> int:
        self._require_fitted()
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        self._require_fitted()
        return self.means.shape[1]

    def _require_fitted(self) -> None:
        if self._chol is None:
            raise ValueError("this GaussianClassConditional has no parameters yet; call fit(x, y) first")

    # ----------------------------------------------------------------- fitting

    def fit(self, x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None) -> "GaussianClassConditional":
        """Maximum-likelihood fit to points ``x`` (N, D) with labels ``y`` (N,) in ``0..K-1``.

        ``K = n_classes`` or, by default, ``y.max() + 1``; every class needs at
        least two points. Returns ``self`` so that ``model = GaussianClassConditional().fit(x, y)``.
        """
        x = _check_points(x, None, "fit").to(torch.float64)
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
            raise ValueError(f"labels must be a 1-D tensor with one label per point ({len(x)}), "
                             f"got {tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
        k = int(y.max()) + 1 if n_classes is None else n_classes
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(f"labels must lie in [0, {k}), got values in [{int(y.min())}, {int(y.max())}]")
        counts = torch.bincount(y, minlength=k)                        # (K,)
        if (counts < 2).any():
            few = torch.nonzero(counts < 2).flatten().tolist()
            raise ValueError(f"class(es) {few} have fewer than 2 points; cannot estimate a covariance")
        d = x.shape[1]
        means = torch.stack([x[y == c].mean(0) for c in range(k)])     # (K, D)
        covs = []
        for c in range(k):
            centred = x[y == c] - means[c]                             # (N_c, D)
            covs.append(centred.T @ centred / len(centred))            # (D, D), the ML (1/N_c) estimate
        covs = torch.stack(covs) + self.reg * torch.eye(d, dtype=torch.float64)   # (K, D, D)
        self._set(means, covs, counts.double() / len(x))
        return self

    # ----------------------------------------------------------------- scoring

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x, y = k) = log pi_k + log N(x; mu_k, Sigma_k)`` for every class: (N, K), float64.

        ``log N(x; mu, Sigma) = -1/2 [ |L^-1 (x - mu)|^2 + log det Sigma + D log(2 pi) ]``.
        """
        self._require_fitted()
        x = _check_points(x, self.n_features, "log_joint").to(torch.float64)
        diff = x[:, None, :] - self.means[None]                                        # (N, K, D)
        # solve L z = diff for each class: z = L^-1 (x - mu), so |z|^2 is the Mahalanobis distance
        z = torch.linalg.solve_triangular(self._chol[None], diff[..., None], upper=False)[..., 0]   # (N, K, D)
        maha = (z ** 2).sum(-1)                                                        # (N, K)
        log_det = 2 * torch.log(torch.diagonal(self._chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        log_gauss = -0.5 * (maha + log_det + self.n_features * math.log(2 * math.pi))  # (N, K)
        return log_gauss + torch.log(self.priors)                                      # (N, K)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density of each point, shape (N,), float32.

        Without labels: ``log p(x) = logsumexp_k log p(x, y = k)`` (the mixture).
        With labels ``y`` (N,): the joint ``log p(x, y)``.
        """
        joint = self.log_joint(x)                                       # (N, K)
        if y is None:
            return torch.logsumexp(joint, dim=1).float()                # (N,)
        y = self._check_labels(y, len(joint))
        return joint.gather(1, y[:, None])[:, 0].float()                # (N,)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Bayes' rule: ``p(y = k | x)``, shape (N, K), rows sum to 1."""
        return F.softmax(self.log_joint(x), dim=1).float()             # (N, K)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class ``argmax_k p(y = k | x)``, shape (N,), dtype long."""
        return self.log_joint(x).argmax(dim=1)                          # (N,)

    # ----------------------------------------------------------------- generating

    def sample(self, n: int, labels=None, generator: torch.Generator | None = None):
        """Draw ``n`` new labelled points: returns ``(x (n, D) float32, y (n,) long)``.

        ``labels=None`` draws each class with its prior ``pi_k``; an int asks for
        ``n`` points of that class; a tensor (n,) gives each point's class.
        Pass a seeded ``torch.Generator`` for reproducible samples.
        """
        self._require_fitted()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if labels is None:
            y = torch.multinomial(self.priors, n, replacement=True, generator=generator)   # (n,)
        elif isinstance(labels, int) and not isinstance(labels, bool):
            y = self._check_labels(torch.full((n,), labels, dtype=torch.long), n)
        else:
            y = self._check_labels(labels, n)
        z = torch.randn(n, self.n_features, generator=generator, dtype=torch.float64)      # (n, D)
        x = self.means[y] + (self._chol[y] @ z[:, :, None])[:, :, 0]                       # (n, D): mu + L z
        return x.float(), y

    def _check_labels(self, y, n: int) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.dim() != 1 or len(y) != n:
            raise ValueError(f"labels must be a 1-D tensor of {n} class ids, got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y.long()
