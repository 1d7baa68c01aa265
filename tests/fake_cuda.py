"""Find code that would break on a CUDA GPU, on a machine without one.

On a CPU every tensor lives on the same device, so a forgotten ``.to(device)`` or a CPU
random generator used for a GPU draw goes unnoticed until a reader runs the code on a GPU.
Inside ``with fake_cuda() as findings:`` PyTorch pretends to have a GPU:

- ``torch.cuda.is_available()`` is true, so ``get_device()`` returns ``cuda``;
- a tensor or module moved to ``cuda`` stays on the CPU but is *tagged* as a GPU tensor,
  answers ``.device == cuda`` and ``.is_cuda``, and passes its tag to every result computed
  from it (a ``torch.overrides.TorchFunctionMode`` sees every PyTorch call);
- ``torch.Generator(device="cuda")`` makes a CPU generator tagged the same way.

The computation itself runs on the CPU, unchanged. Instead of failing, the mistakes a GPU
would reject are recorded in ``findings`` (a list of strings, one per place in the code):

- an operation on tagged and untagged tensors together ("mixed"); untagged 0-dim tensors
  and CPU index tensors into a tagged tensor are allowed, as they are on a GPU;
- a random draw whose generator sits on the other device ("generator");
- ``.numpy()`` (or ``numpy.asarray``, hence matplotlib) on a tagged tensor ("numpy").

Semantics a GPU changes but this emulation cannot see (TF32 rounding, kernel timings,
asynchronous execution) are not checked.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
_RealGenerator = torch.Generator


class _FakeGenerator(_RealGenerator):
    """A CPU generator that says it lives on ``cuda`` when asked for ``device="cuda"``."""

    def __new__(cls, device="cpu"):
        return _RealGenerator.__new__(cls, "cpu")

    def __init__(self, device="cpu"):
        self._fc = _is_cuda(device) or False

    @property
    def device(self):
        return CUDA if self._fc else CPU


def _tag(t) -> bool:
    return bool(getattr(t, "_fc", False))


def _set_tag(t, value: bool) -> None:
    try:
        t._fc = value
    except (AttributeError, RuntimeError):
        pass


def _is_cuda(device) -> bool | None:
    if device is None:
        return None
    if isinstance(device, int):
        return True
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return None


def _tensors(x, out: list) -> list:
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for y in x:
            _tensors(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _tensors(y, out)
    return out


_DEVICE_GET = torch._C.TensorBase.device
_IS_CUDA_GET = torch._C.TensorBase.is_cuda
_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}
_MAY_MIX = {"copy_", "__set__", "set_", "__repr__", "__format__", "__str__",
            "_has_compatible_shallow_copy_type", "is_same_size"}


class _FakeCudaMode(TorchFunctionMode):
    def __init__(self, findings: list):
        super().__init__()
        self.findings = findings
        self._seen: set = set()

    def _record(self, kind: str, message: str) -> None:
        here, stdlib = os.path.abspath(__file__), sysconfig.get_paths()["stdlib"]
        frames = [f for f in traceback.extract_stack()                 # the caller's frames, innermost last
                  if os.path.abspath(f.filename) != here and not f.filename.startswith(stdlib)
                  and "site-packages" not in f.filename and "/torch/" not in f.filename]
        where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} `{(f.line or '').strip()[:70]}`"
                            for f in reversed(frames[-3:]))
        key = (kind, where)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(f"{kind}: {message} at {where}")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        owner = getattr(func, "__self__", None)
        if owner is _DEVICE_GET:
            return CUDA if _tag(args[0]) else func(*args, **kwargs)
        if owner is _IS_CUDA_GET:
            return _tag(args[0])
        name = getattr(func, "__name__", "")
        if name == "get_device" and args and _tag(args[0]):
            return 0
        if name in ("numpy", "__array__") and args and _tag(args[0]):
            self._record("numpy", f"{name}() of a GPU tensor")
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            return self._move(func, name, args, kwargs)
        want = None
        if "device" in kwargs:
            want = _is_cuda(kwargs["device"])
            if want:
                kwargs["device"] = "cpu"
        inputs = _tensors(args, []) + _tensors(kwargs, [])
        tags = [_tag(t) for t in inputs]
        any_gpu = any(tags)
        if any_gpu and name not in _MAY_MIX and not name.startswith("__get"):
            if name in _INDEXING:
                bad = not tags[0] and any(tags[1:])          # GPU indices into a CPU tensor
            else:
                bad = any(not tg and t.dim() > 0 for t, tg in zip(inputs, tags))
            if bad:
                kinds = ["cuda" if tg else ("cpu 0-dim" if t.dim() == 0 else "cpu") for t, tg in zip(inputs, tags)]
                self._record("mixed", f"{name} on {kinds}")
        out_gpu = want if want is not None else any_gpu
        gen = kwargs.get("generator")
        if isinstance(gen, torch.Generator) and bool(getattr(gen, "_fc", False)) != bool(out_gpu):
            self._record("generator", f"{name} draws on {'cuda' if out_gpu else 'cpu'} with a "
                                      f"{'cuda' if getattr(gen, '_fc', False) else 'cpu'} generator")
        out = func(*args, **kwargs)
        if want is not None and isinstance(out, torch.Tensor) and _tag(out) != bool(want) \
                and any(out is t for t in inputs):
            out = out.clone()                                 # as_tensor returned its input: a move copies
            _set_tag(out, bool(want))
            return out
        if want is not None or any_gpu:
            for o in _tensors(out, []):
                _set_tag(o, bool(out_gpu))
        return out

    def _move(self, func, name, args, kwargs):
        t = args[0]
        if name == "cuda":
            target, out = True, t
        elif name == "cpu":
            target, out = False, t
        else:
            other = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else kwargs.get("other")
            if isinstance(other, torch.Tensor):
                target, out = _tag(other), t.to(other.dtype)
            else:
                device, dtype, _, _ = torch._C._nn._parse_to(
                    *args[1:], **{k: v for k, v in kwargs.items() if k != "copy"})
                target = None if device is None else device.type == "cuda"
                out = t.to(dtype=dtype, copy=bool(kwargs.get("copy"))) if dtype is not None or kwargs.get("copy") else t
        if target is None:
            if out is not t:
                _set_tag(out, _tag(t))
            return out
        if out is t and _tag(t) != target:
            out = t.clone()                                   # a real move copies
        if out is not t:
            _set_tag(out, target)
        return out


def _tag_module(module: torch.nn.Module, value: bool) -> None:
    for p in module.parameters():
        _set_tag(p, value)
        if p.grad is not None:
            _set_tag(p.grad, value)
    for b in module.buffers():
        _set_tag(b, value)


@contextmanager
def fake_cuda():
    """Pretend to have a CUDA GPU inside the block; yields the list of findings."""
    findings: list[str] = []
    module_to, module_cuda, module_cpu = torch.nn.Module.to, torch.nn.Module.cuda, torch.nn.Module.cpu
    cuda_names = ("is_available", "device_count", "synchronize", "manual_seed", "manual_seed_all",
                  "current_device", "_exchange_device", "_maybe_exchange_device")
    saved_cuda = {n: getattr(torch.cuda, n) for n in cuda_names}

    def to(self, *args, **kwargs):
        if args and isinstance(args[0], torch.Tensor):
            device, dtype = (CUDA if _tag(args[0]) else CPU), args[0].dtype
        else:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None:
            module_to(self, dtype)
        if device is not None:
            _tag_module(self, device.type == "cuda")
        return self

    def cuda(self, device=None):
        _tag_module(self, True)
        return self

    def cpu(self):
        _tag_module(self, False)
        return self

    torch.nn.Module.to, torch.nn.Module.cuda, torch.nn.Module.cpu = to, cuda, cpu
    torch.Generator = _FakeGenerator
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    for n in ("synchronize", "manual_seed", "manual_seed_all"):
        setattr(torch.cuda, n, lambda *a, **k: None)
    for n in ("current_device", "_exchange_device", "_maybe_exchange_device"):   # torch.cuda.device(i) blocks
        setattr(torch.cuda, n, lambda *a, **k: 0)
    try:
        with _FakeCudaMode(findings):
            yield findings
    finally:
        torch.nn.Module.to, torch.nn.Module.cuda, torch.nn.Module.cpu = module_to, module_cuda, module_cpu
        torch.Generator = _RealGenerator
        for n, f in saved_cuda.items():
            setattr(torch.cuda, n, f)
