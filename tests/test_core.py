import random

import numpy as np
import pytest
import torch

from aigc_helpers import budget, cache_dir, full_float32, get_device, is_full_budget, set_seed, synchronize


def test_set_seed_makes_runs_repeat():
    set_seed(3)
    a = torch.randn(5), torch.nn.Linear(4, 4).weight.detach().clone()
    set_seed(3)
    b = torch.randn(5), torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    set_seed(4)
    assert not torch.equal(torch.randn(5), a[0])


def test_set_seed_seeds_python_and_numpy_too():
    """set_seed also restarts Python's random and NumPy's global generator."""
    set_seed(5)
    a = random.random(), np.random.rand(3)
    set_seed(5)
    b = random.random(), np.random.rand(3)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_set_seed_rejects_bad_seed():
    with pytest.raises(ValueError, match="non-negative"):
        set_seed(-1)


def test_budget_switch(monkeypatch):
    monkeypatch.delenv("AIGC_BUDGET", raising=False)
    assert budget(1, 2) == 1 and not is_full_budget()
    monkeypatch.setenv("AIGC_BUDGET", "full")
    assert budget(1, 2) == 2 and is_full_budget()
    monkeypatch.setenv("AIGC_BUDGET", "huge")
    with pytest.raises(ValueError, match="AIGC_BUDGET"):
        budget(1, 2)


def test_device_choice(monkeypatch):
    monkeypatch.delenv("AIGC_DEVICE", raising=False)
    assert get_device().type in {"cpu", "cuda", "mps"}
    assert get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            get_device("cuda")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path / "c"))
    p = cache_dir("models")
    assert p == tmp_path / "c" / "models" and p.is_dir()


def test_synchronize_waits_only_on_accelerators(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize("cpu")
    assert calls == []
    synchronize(torch.device("cuda", 0))
    synchronize("mps")
    assert calls == [("cuda", torch.device("cuda", 0)), ("mps", None)]


def test_full_float32_switches_tf32_off_and_restores_it():
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = "tf32"                                   # as on a recent GPU by default
    try:
        with full_float32():
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
            with pytest.raises(KeyError):                          # restored even when the block fails
                with full_float32():
                    raise KeyError("x")
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", before[1])
        x = torch.randn(2, 3, 8, 8)
        with full_float32():                                       # on a CPU the numbers do not change
            inside = torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3))
        assert torch.equal(inside, torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3)))
    finally:
        conv.fp32_precision, matmul.fp32_precision = before
