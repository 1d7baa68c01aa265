"""Seeds, device choice, the compute budget and the cache folder.

Every notebook starts with the same three lines::

    from aigc_helpers import set_seed, get_device, budget
    set_seed(0)
    device = get_device()

and sizes its experiments with ``budget(default, full)``: the *default* budget
runs on a laptop CPU in about a minute; ``AIGC_BUDGET=full`` (for a GPU or
Colab) trains longer and bigger through exactly the same code.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

_VALID_BUDGETS = ("default", "full")


def _read_budget() -> str:
    value = os.environ.get("AIGC_BUDGET", "default").strip().lower() or "default"
    if value not in _VALID_BUDGETS:
        raise ValueError(
            f"AIGC_BUDGET={value!r} is not a known budget; use one of {_VALID_BUDGETS} "
            "(unset it for the default CPU budget)."
        )
    return value


BUDGET: str = _read_budget()
"""The budget this process runs under: ``"default"`` or ``"full"``."""


def is_full_budget() -> bool:
    """True when ``AIGC_BUDGET=full`` (read at call time, so tests can change it)."""
    return _read_budget() == "full"


def budget(default, full):
    """Pick a value by compute budget: ``steps = budget(300, 5000)``.

    The default budget keeps every notebook near a minute on a 2-core CPU;
    ``AIGC_BUDGET=full`` returns ``full`` instead.
    """
    return full if is_full_budget() else default


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so reruns match."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer="cpu"`` (or the environment variable ``AIGC_DEVICE``) forces a choice.
    """
    choice = (prefer or os.environ.get("AIGC_DEVICE", "")).strip().lower()
    if choice:
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no CUDA GPU is available; use 'cpu'.")
        if choice == "mps" and not torch.backends.mps.is_available():
            raise ValueError("MPS was requested but is not available on this machine; use 'cpu'.")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished the work queued on it; a no-op on the CPU.

    GPUs run operations asynchronously, so a clock read right after a call measures
    only how long it took to *queue* the work. Call this before reading a clock.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextmanager
def full_float32():
    """Inside this block, float32 matrix products and convolutions on a GPU use full float32.

    By default PyTorch lets cuDNN convolutions on recent NVIDIA GPUs (Ampere and later) round
    their inputs to TF32, a format with a 10-bit mantissa: faster, and harmless for training,
    but two computations that agree to float32 rounding can then differ by about 1e-3.
    Checks that compare two routes to the same number run inside this block. On a CPU it
    changes nothing.
    """
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    if hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):   # PyTorch >= 2.9
        saved = conv.fp32_precision, matmul.fp32_precision
        conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
    else:                                                                       # older releases
        saved = torch.backends.cudnn.allow_tf32, matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = saved


def cache_dir(*parts: str) -> Path:
    """The folder where trained models and downloaded data are kept.

    ``~/.cache/aigc_helpers`` unless the environment variable ``AIGC_CACHE``
    names another folder. Sub-folders are created on demand.
    """
    root = Path(os.environ.get("AIGC_CACHE") or Path.home() / ".cache" / "aigc_helpers")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
