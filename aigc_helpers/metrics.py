"""How good is a model? Perplexity for text; a judge and a classifier-FID for images.

Text: a language model's average cross-entropy ``L`` (in nats per token) reads
more easily as a *perplexity* ``exp(L)`` (the model is as unsure as a uniform
choice among that many tokens) or as *bits per character* ``L / ln 2``. ``corpus_loss`` measures ``L`` exactly
over a whole split rather than on random batches.

Images: there is no loss to read off a GAN or a diffusion model, so the book
judges samples with a small CNN trained once per data set, the **image judge**:

- ``accuracy``: a class-conditional sample should be recognised as its class;
- ``confidence``: the judge's mean top probability (sharp samples look like
  *some* class);
- ``coverage``: the fraction of classes that receive a fair share of samples
  (mode collapse shows up as low coverage);
- ``fid``: the Fréchet distance between Gaussians fitted to the judge's
  features of real and generated images, the idea of FID (Heusel et al., 2017)
  with our small judge in place of Inception. Two samples of *real* images are
  not at distance 0; that floor is reported beside every result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .core import budget, get_device, set_seed
from .data import ImageData, load_images
from .train import load_or_train, train
from .vision import CNNConfig, SmallCNN, accuracy


def perplexity(loss_nats: float) -> float:
    """``exp(loss)``: the effective number of equally likely next tokens."""
    return math.exp(loss_nats)


def bits_per_char(loss_nats: float) -> float:
    """Cross-entropy in bits: ``loss / ln 2``."""
    return loss_nats / math.log(2)


@torch.no_grad()
def corpus_loss(model: torch.nn.Module, ids: torch.Tensor, block_size: int, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per character) of ``model`` over all of ``ids`` (1-D).

    ``ids`` is cut into consecutive windows of ``block_size + 1`` that share one token (a
    window's last token is the next one's first input); every token but ``ids[0]`` is
    predicted once, from the tokens before it in its window.
    """
    ids = torch.as_tensor(ids).flatten()
    if len(ids) < 2:
        raise ValueError("need at least two tokens to compute a loss")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_full = (len(ids) - 1) // block_size
    windows = [torch.arange(n_full * block_size).view(n_full, block_size)]     # (n_full, T) positions
    if (len(ids) - 1) % block_size:                                             # a shorter last window
        windows.append(torch.arange(n_full * block_size, len(ids) - 1)[None])   # (1, T_last)
    total, count = 0.0, 0
    for pos in windows:
        for b in range(0, len(pos), batch_size):
            p = pos[b:b + batch_size]                                            # (B, T)
            logits = model(ids[p].to(device))[0]                                 # (B, T, V)
            y = ids[p + 1].to(device)                                            # (B, T) the next characters
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    model.train(was_training)
    return total / count


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D).

    d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, D) feature matrices, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least two samples on each side")
    a, b = a.double(), b.double()
    d = a.shape[1]
    mu_a, mu_b = a.mean(0), b.mean(0)                          # (D,)
    s_a, s_b = torch.cov(a.T).reshape(d, d), torch.cov(b.T).reshape(d, d)  # (D, D); a 0-d scalar when D = 1
    # Tr (S_a S_b)^{1/2} = sum of sqrt eigenvalues of S_a^{1/2} S_b S_a^{1/2} (symmetric, PSD)
    evals, evecs = torch.linalg.eigh(s_a)
    root_a = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    middle = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0)
    d2 = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * middle.sqrt().sum()
    return float(d2.clamp(min=0))


@dataclass
class JudgeConfig:
    dataset: str = "fashion"     # "digits" (8x8) or "fashion" (28x28)
    n_train: int | None = 20000  # Fashion-MNIST subset (of 60,000) that keeps training ~10 s on a CPU
    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    width: int = 16
    seed: int = 0


def judge_config(dataset: str) -> JudgeConfig:
    """The judge's training recipe per data set (bigger with ``AIGC_BUDGET=full``)."""
    if dataset == "digits":
        return JudgeConfig("digits", None, budget(300, 1500), 64, 3e-3, 16)
    if dataset == "fashion":
        return JudgeConfig("fashion", budget(20000, None), budget(400, 4000), 128, 3e-3, budget(16, 32))
    raise ValueError(f"no judge for {dataset!r}; choose 'digits' or 'fashion'")


class ImageJudge:
    """A trained classifier that scores images from any generator of one data set."""

    def __init__(self, model: SmallCNN, classes: list[str], dataset: str, test_accuracy: float,
                 train_loss: list[float] | None = None):
        self.model = model.eval()
        self.classes = classes
        self.dataset = dataset
        self.test_accuracy = test_accuracy          # measured once, right after training
        self.train_loss = list(train_loss or [])    # one loss per training step (kept in the cache)
        self.size = model.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.model.config.in_channels:
            raise ValueError(f"expected images (N, {self.model.config.in_channels}, H, W), got {tuple(x.shape)}")
        x = x.float().clamp(0, 1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def _run(self, x: torch.Tensor, fn, batch_size: int = 1000) -> torch.Tensor:
        x = self._prepare(x)
        return torch.cat([fn(x[i:i + batch_size].to(self.device)).cpu() for i in range(0, len(x), batch_size)])

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, n_classes)``; images of another size are resized."""
        return self._run(x, lambda b: self.model(b)[0].softmax(-1))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs(x).argmax(-1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.model.features)

    def score(self, x: torch.Tensor, labels: torch.Tensor | None = None, fair_share: float = 0.2,
              reference: torch.Tensor | None = None) -> dict:
        """Judge a batch of samples.

        Returns ``confidence`` (mean top probability), ``coverage`` (fraction of
        classes predicted for at least ``fair_share`` of their 1/K share of the
        samples), ``class_counts``, ``accuracy`` when ``labels`` are given, and
        ``fid`` when ``reference`` features ``(M, n_features)`` are given (for example
        ``judge.features(real_images)``, computed once for many comparisons). The
        probabilities and the features come from one pass of the network, so asking
        for the FID here costs half of calling ``score`` and ``fid`` apart.
        """
        feats = self.features(x)                                      # (N, n_features)
        with torch.no_grad():
            p = self.model.head(feats.to(self.device)).softmax(-1).cpu()  # (N, K)
        pred = p.argmax(-1)
        k = len(self.classes)
        counts = torch.bincount(pred, minlength=k)
        result = {
            "confidence": p.max(-1).values.mean().item(),
            "coverage": (counts >= fair_share * len(x) / k).float().mean().item(),
            "class_counts": counts.tolist(),
        }
        if labels is not None:
            result["accuracy"] = (pred == labels.cpu()).float().mean().item()
        if reference is not None:
            result["fid"] = frechet_distance(feats, reference.cpu())
        return result

    def fid(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Classifier-FID between two sets of images (e.g. samples and real test images)."""
        return frechet_distance(self.features(x), self.features(y))

    def fid_floor(self, n: int | None = None, seed: int = 0) -> float:
        """FID between two disjoint random sets of ``n`` real test images: the best a model can hope for.

        ``n`` defaults to 1000, or half the test set when that is smaller (digits).
        Compare a model's FID with the floor for the same ``n``: the estimate shrinks as ``n`` grows.
        """
        test = load_images(self.dataset, "test")
        n = min(1000, len(test) // 2) if n is None else n
        if n < 2 or 2 * n > len(test):
            raise ValueError(f"need 2 <= n and 2n <= {len(test)} test images, got n={n}")
        idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
        return self.fid(test.x[idx[:n]], test.x[idx[n:2 * n]])


def get_judge(dataset: str = "fashion", device=None, progress: bool = True) -> ImageJudge:
    """The image judge for ``dataset``, trained once and then loaded from the cache.

    The training images are only read when the judge has to be trained; a
    cached judge loads in well under a second.
    """
    cfg = judge_config(dataset)
    test_set: ImageData = load_images(dataset, "test")
    cnn_cfg = CNNConfig(in_channels=test_set.shape[0], image_size=test_set.shape[1],
                        n_classes=len(test_set.classes), width=cfg.width)

    def build() -> SmallCNN:
        set_seed(cfg.seed)
        return SmallCNN(cnn_cfg)

    def fit(model: SmallCNN) -> dict:
        train_set: ImageData = load_images(dataset, "train", n=cfg.n_train, seed=cfg.seed)
        set_seed(cfg.seed)
        history = train(model, train_set.loader(cfg.batch_size, seed=cfg.seed), cfg.steps,
                        lr=cfg.lr, warmup=20, lr_min=cfg.lr / 30, device=device,
                        desc=f"judge ({dataset})", progress=progress)
        return {"test_accuracy": accuracy(model, test_set.x, test_set.y), "loss": history.loss}

    model, info = load_or_train(f"judge-{dataset}", {"judge": asdict(cfg), "cnn": asdict(cnn_cfg)},
                                build, fit, device=device or get_device())
    result = info["result"] or {}
    return ImageJudge(model, test_set.classes, dataset, result.get("test_accuracy", float("nan")),
                      result.get("loss"))
