"""One training loop for every chapter, checkpoints, and a load-or-train cache.

``train`` is deliberately plain: fetch a batch, compute a loss, step the
optimizer, and keep a history. It shows a ``tqdm.auto`` progress bar (a widget
in Jupyter, text in a terminal), evaluates every ``eval_every`` steps, clips
gradients, and can warm up and cosine-decay the learning rate.

Language models follow the face ``model(x, targets) -> (logits, loss)``, so the
default loss needs no code at all. Anything else passes ``loss_fn``; models
with several optimizers (a GAN) pass ``step_fn`` and let the loop keep the
progress bar and the history.

``load_or_train`` keeps trained weights in a cache keyed by the model's config,
so a later chapter reuses what an earlier one trained, and a changed config
never loads a stale model.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .core import cache_dir, get_device


@dataclass
class History:
    """What happened during training: one loss per step, evaluations, timing."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)       # extra per-step values
    eval_steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)      # name -> one value per evaluation
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)

    def last(self, name: str) -> float:
        """The latest evaluation of ``name`` (e.g. ``history.last("val_loss")``)."""
        if name not in self.evals or not self.evals[name]:
            raise KeyError(f"no evaluation named {name!r}; have {sorted(self.evals)}")
        return self.evals[name][-1]


def lr_at(step: int, steps: int, lr: float, warmup: int = 0, lr_min: float | None = None) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay to ``lr_min``.

    With ``lr_min=None`` the rate stays constant after the warm-up.
    """
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if lr_min is None:
        return lr
    progress = (step - warmup) / max(1, steps - warmup)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batches(data) -> Callable[[], object]:
    """Turn a batch function or an iterable (e.g. a DataLoader) into ``next_batch()``."""
    if callable(data) and not isinstance(data, Iterable):
        return data
    if isinstance(data, Iterable):
        iterator: list[Iterator] = [iter(data)]

        def next_batch():
            try:
                return next(iterator[0])
            except StopIteration:  # start a new epoch
                iterator[0] = iter(data)
                return next(iterator[0])

        return next_batch
    raise ValueError("data must be a function returning a batch or an iterable of batches")


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def default_loss(model: nn.Module, batch) -> torch.Tensor:
    """The language-model face: ``model(x, y)`` returns ``(logits, loss)``."""
    x, y = batch
    _, loss = model(x, y)
    return loss


def fused_adamw(params, **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with PyTorch's fused kernel where it has one.

    The fused kernel (CPU and CUDA, PyTorch >= 2.4) updates every parameter in
    one operation instead of a few per tensor: the same formula, and on a small
    model several milliseconds a step faster. Older versions fall back to the
    default implementation.
    """
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kwargs)


def train(
    model: nn.Module,
    data,
    steps: int,
    *,
    lr: float = 1e-3,
    loss_fn: Callable[[nn.Module, object], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    grad_clip: float | None = 1.0,
    warmup: int = 0,
    lr_min: float | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    step_fn: Callable[[object, int], dict[str, float]] | None = None,
    device: torch.device | str | None = None,
    desc: str = "training",
    progress: bool = True,
) -> History:
    """Train ``model`` for ``steps`` steps and return its :class:`History`.

    Args:
        model: any ``nn.Module``; it is moved to ``device``.
        data: a function returning one batch, or an iterable of batches
            (a ``DataLoader`` is restarted when exhausted).
        steps: number of optimizer steps.
        lr, weight_decay, betas: AdamW settings. With ``optimizer`` they make no optimizer,
            but ``lr`` is still the rate that ``lr_min`` is relative to: every parameter
            group decays from its own rate to ``lr_min / lr`` of it.
        loss_fn: ``loss_fn(model, batch) -> scalar``; default ``model(x, y)[1]``.
        grad_clip: clip the global gradient norm to this value (``None``: off).
        warmup, lr_min: linear warm-up steps, then cosine decay to ``lr_min``.
        eval_fn: ``eval_fn(model) -> {"val_loss": ...}``, called in ``eval`` mode
            under ``torch.no_grad`` every ``eval_every`` steps and at the end.
        step_fn: replaces the whole update; ``step_fn(batch, step) -> {"loss": ...}``
            for models that manage their own optimizers (GANs).
        device: defaults to :func:`aigc_helpers.get_device`.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    next_batch = _batches(data)
    loss_fn = loss_fn or default_loss
    if step_fn is None and optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups] if optimizer is not None else []
    eval_every = eval_every or max(1, steps // 10)
    history = History()

    def evaluate(step: int) -> dict[str, float]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            result = {k: float(v) for k, v in eval_fn(model).items()}
        model.train(was_training)
        history.eval_steps.append(step)
        for k, v in result.items():
            history.evals.setdefault(k, []).append(v)
        return result

    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=True)
    postfix: dict[str, float] = {}
    for step in bar:
        batch = _to(next_batch(), device)
        if step_fn is not None:
            logs = {k: float(v) for k, v in step_fn(batch, step).items()}
            loss_value = logs.pop("loss", next(iter(logs.values()), float("nan")))
            current_lr = float("nan")
        else:
            scale = lr_at(step, steps, 1.0, warmup, None if lr_min is None else lr_min / lr)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * scale
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step}; lower the learning rate "
                    "or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            loss_value, logs = loss.item(), {}
            current_lr = optimizer.param_groups[0]["lr"]
        history.steps.append(step)
        history.loss.append(loss_value)
        history.lr.append(current_lr)
        for k, v in logs.items():
            history.logs.setdefault(k, []).append(v)
        if eval_fn is not None and (step + 1) % eval_every == 0 and step + 1 < steps:
            postfix.update(evaluate(step + 1))
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss_value:.3f}", **{k: f"{v:.3f}" for k, v in postfix.items()})
    if eval_fn is not None:
        postfix.update(evaluate(steps))
        bar.set_postfix(loss=f"{history.loss[-1]:.3f}", **{k: f"{v:.3f}" for k, v in postfix.items()})
    bar.close()
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


class KeepBest:
    """An ``eval_fn`` for :func:`train` that remembers the weights with the lowest ``key``.

    Subclasses say what to measure in :meth:`measure` (a dict of floats, ``key`` among them).
    Every call measures, and keeps a copy of ``model.state_dict()`` when ``key`` is the lowest
    so far; :meth:`restore` loads that copy back (early stopping without stopping early).
    ``calls`` counts the evaluations and ``best_call`` is the index of the best one.
    """

    key = "val_loss"

    def __init__(self):
        self.best_loss, self.best_state, self.calls, self.best_call = float("inf"), None, 0, -1

    def measure(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError("a KeepBest subclass must say what to measure")

    def __call__(self, model: nn.Module) -> dict[str, float]:
        out = self.measure(model)
        if out[self.key] < self.best_loss:
            self.best_loss, self.best_call = out[self.key], self.calls
            self.best_state = copy.deepcopy(model.state_dict())
        self.calls += 1
        return out

    def restore(self, model: nn.Module) -> nn.Module:
        if self.best_state is None:
            raise ValueError("no evaluation has run yet, so there are no best weights to restore")
        model.load_state_dict(self.best_state)
        return model


# --------------------------------------------------------------------------- checkpoints


def _config_dict(config) -> dict:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict or a dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def config_key(config) -> str:
    """A stable 16-character hash of a config (dict or dataclass)."""
    text = json.dumps(_config_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(model: nn.Module, path: str | Path, config=None, extra: dict | None = None) -> Path:
    """Save ``model.state_dict()`` with its config (atomically: never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": json.dumps(_config_dict(config), sort_keys=True) if config is not None else None,
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(model: nn.Module, path: str | Path, config=None) -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``model`` (``weights_only=True``).

    If ``config`` is given it must equal the saved one, else ``ValueError``:
    weights trained under another config are never loaded silently.
    Returns the checkpoint's ``extra`` dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if config is not None:
        want = json.dumps(_config_dict(config), sort_keys=True)
        if payload.get("config") != want:
            raise ValueError(
                f"checkpoint {path.name} was trained with config {payload.get('config')}, "
                f"not {want}; delete it or train again"
            )
    model.load_state_dict(payload["state_dict"])
    return payload.get("extra", {})


def load_or_train(
    name: str,
    config,
    build: Callable[[], nn.Module],
    fit: Callable[[nn.Module], dict | History | None],
    *,
    device: torch.device | str | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict]:
    """Return a trained model, from the cache when it is there.

    ``build()`` makes a fresh model; ``fit(model)`` trains it and may return a
    :class:`History` or a dict of JSON-friendly results (kept in the cache with
    the weights). The cache file is ``<cache>/models/<name>-<config hash>.pt``,
    so a changed config trains a new model instead of loading a stale one.

    Returns ``(model, info)`` where ``info`` has ``"cached"`` (bool), ``"path"``
    and whatever ``fit`` returned under ``"result"``.
    """
    device = torch.device(device) if device is not None else get_device()
    full_config = {"name": name, "config": _config_dict(config)}
    path = cache_dir("models") / f"{name}-{config_key(full_config)}.pt"
    model = build()
    if path.exists() and not retrain:
        try:
            extra = load_checkpoint(model, path, full_config)
            model.to(device).eval()
            return model, {"cached": True, "path": str(path), "result": extra.get("result")}
        except (ValueError, RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError):
            model = build()  # unreadable or mismatched: train a fresh model (a failed load may have set some weights)
    model.to(device)
    result = fit(model)
    if isinstance(result, History):
        result = result.to_dict()
    save_checkpoint(model, path, full_config, extra={"result": result})
    model.to(device).eval()
    return model, {"cached": False, "path": str(path), "result": result}
