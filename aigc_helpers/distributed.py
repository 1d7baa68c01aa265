"""Data parallelism: several processes train one model, each on its own slice of every batch.

Every process (a **rank**) holds a full copy of the model. At every step each rank
computes the gradient of the loss on its own slice of the global batch; an
**all-reduce** then averages the gradients over the ranks, so every rank takes the
same optimizer step and the copies stay identical. N ranks with a batch of b each
take the step that one process would take with the whole batch of N * b.

This module is a training program for the book's GPT that runs that way. Start it
with ``torchrun`` (two processes on a CPU, backend ``gloo``; one per GPU with ``nccl``)::

    python -m torch.distributed.run --nproc_per_node=2 -m aigc_helpers.distributed --steps 30 --out runs/ddp

Reading order:

    shard_indices      which training examples each rank sees (DistributedSampler's rule)
    average_gradients  the all-reduce that DistributedDataParallel does, written by hand
    init_distributed   the rendezvous: read what torchrun set, join the process group
    RunArgs            the settings of a run (the command-line options)
    ShardedWindows     one rank's stream of micro-batches of Shakespeare
    build              the GPT, wrapped in DDP when there are several ranks, and AdamW
    train              the loop every rank runs: gradient accumulation with no_sync,
                       logging from rank 0; rank 0 saves model.pt and run.json
    main               the command line (``python -m aigc_helpers.distributed --help``)
    launch             start the program with torchrun from Python (notebooks, tests)
    training_memory    bytes per GPU for weights, gradients and Adam state (ZeRO stages 0-3)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .core import set_seed
from .data import char_dataset, load_shakespeare
from .gpt import GPT, GPTConfig
from .train import fused_adamw, lr_at
from .zoo import shakespeare_data


# --------------------------------------------------------------------------- which examples a rank sees


def shard_indices(n: int, world_size: int, rank: int, *, shuffle: bool = True, seed: int = 0,
                  epoch: int = 0, drop_last: bool = False) -> list[int]:
    """The indices of the examples that ``rank`` reads in ``epoch``, out of ``n`` examples.

    The rule of ``torch.utils.data.DistributedSampler``: every rank draws the same
    permutation (seeded by ``seed + epoch``), makes its length a multiple of
    ``world_size`` (repeating the first indices, or with ``drop_last`` cutting the tail),
    and keeps every ``world_size``-th index starting at its own rank. So the ranks'
    shards cover the permutation and are disjoint except for the repeated padding
    indices (none with ``drop_last``).
    """
    if n <= 0:
        raise ValueError(f"need at least one example, got n={n}")
    if world_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
    if drop_last and n < world_size:
        raise ValueError(f"drop_last with {n} examples and {world_size} ranks leaves nothing")
    if shuffle:
        g = torch.Generator().manual_seed(seed + epoch)       # the same permutation on every rank
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    total = (n // world_size) * world_size if drop_last else math.ceil(n / world_size) * world_size
    order = order[:total] if drop_last else (order * math.ceil(total / n))[:total]   # pad by repeating
    return order[rank:total:world_size]                       # every world_size-th, from this rank on


def window_batch(tokens: torch.Tensor, starts: list[int] | torch.Tensor, block_size: int):
    """Windows of ``block_size + 1`` tokens at ``starts`` -> inputs and next-token targets, (B, T) each."""
    starts = torch.as_tensor(starts, dtype=torch.long)
    offsets = torch.arange(block_size + 1)
    chunk = tokens[starts[:, None] + offsets]                 # (B, T + 1)
    return chunk[:, :-1], chunk[:, 1:]                        # x (B, T), y (B, T)


# --------------------------------------------------------------------------- what DDP does, by hand


def average_gradients(model: nn.Module) -> None:
    """Replace every gradient by its mean over all ranks: an all-reduce (sum), then / world size.

    This is what ``DistributedDataParallel`` does during ``backward()``. DDP is faster
    because it packs the gradients into buckets of about 25 MB and starts
    communicating a bucket as soon as its gradients are ready, while the rest of the
    backward pass is still running; the numbers are the same.
    """
    world_size = dist.get_world_size()
    for p in model.parameters():                              # a tied weight is listed once
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)     # every rank now holds the sum
            p.grad /= world_size


# --------------------------------------------------------------------------- the rendezvous


@dataclass
class DistInfo:
    """Who this process is: its rank among all processes, and on its machine."""

    rank: int = 0          # 0 .. world_size - 1, unique over all machines
    local_rank: int = 0    # 0 .. processes on this machine - 1: which GPU to use
    world_size: int = 1    # processes in the job
    backend: str = ""      # "gloo" (CPUs) or "nccl" (NVIDIA GPUs); "" without a process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_backend(backend: str = "auto") -> str:
    """``"auto"`` means ``nccl`` when there is a CUDA GPU, else ``gloo``."""
    if backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"backend must be 'auto', 'gloo' or 'nccl', got {backend!r}")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("the nccl backend needs CUDA GPUs; use 'gloo' on CPUs")
    return backend


def init_distributed(backend: str = "auto") -> DistInfo:
    """Join the process group that torchrun set up; a single process when not under torchrun.

    torchrun starts every process with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment. ``init_process_group``
    reads them (``init_method="env://"``): a small key-value store (a TCPStore) listens at
    ``MASTER_ADDR:MASTER_PORT``, hosted by torchrun's agent on the first node (by rank 0
    without torchrun); every rank connects to it and they exchange addresses. This meeting
    is the **rendezvous**.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()                                     # plain `python -m ...`: one process, no group
    backend = pick_backend(backend)
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ["WORLD_SIZE"]), backend)
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)                # one GPU per process
    dist.init_process_group(backend, init_method="env://")
    return info


# --------------------------------------------------------------------------- the training program


@dataclass
class RunArgs:
    """The settings of one run; ``--name value`` on the command line (``_`` becomes ``-``)."""

    steps: int = 30             # optimizer steps
    batch_size: int = 8         # sequences per rank per micro-batch
    grad_accum: int = 1         # micro-batches per step; global batch = batch_size * grad_accum * world size
    block_size: int = 64        # context length (the book's GPT; GPT-2: 1024)
    n_layer: int = 2            # the book's GPT (GPT-2 small: 12)
    n_head: int = 4
    n_embd: int = 128
    lr: float = 3e-3            # the book's recipe (AdamW, warm-up, cosine decay, clipping) at half its
    lr_min: float = 3e-4        # learning rate, for a global batch of 16 windows instead of 32
    warmup: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_chars: int = 0          # train on the first max_chars characters of Shakespeare (0: all)
    seed: int = 0
    backend: str = "auto"       # gloo on CPUs, nccl on GPUs
    zero: bool = False          # shard the optimizer state over the ranks (ZeRO stage 1)
    check_grads: bool = False   # at step 0, compare DDP's gradients with average_gradients
    save_grads: bool = False    # rank 0 saves the step-0 gradients, averaged over the ranks
    save_every_rank: bool = False   # every rank saves its weights (to check they are identical)
    log_every: int = 10
    out: str = "runs/ddp"       # the folder for model.pt and run.json

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "block_size", "n_layer", "n_head", "n_embd", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not self.lr > 0 or not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= lr_min <= lr, got lr={self.lr}, lr_min={self.lr_min}")
        if self.warmup < 0 or self.max_chars < 0 or self.seed < 0:
            raise ValueError("warmup, max_chars and seed must be >= 0")
        if self.backend not in ("auto", "gloo", "nccl"):
            raise ValueError(f"backend must be 'auto', 'gloo' or 'nccl', got {self.backend!r}")


def load_tokens(args: RunArgs):
    """The character-tokenized Shakespeare training text: ``(tokens (N,), vocabulary size)``."""
    data = char_dataset(load_shakespeare(max_chars=args.max_chars)) if args.max_chars else shakespeare_data()
    if len(data.train) < 4 * (args.block_size + 1):
        raise ValueError(f"max_chars={args.max_chars} leaves too little text for block_size={args.block_size}")
    return data.train, data.tokenizer.vocab_size


class ShardedWindows:
    """One rank's stream of micro-batches: what a DataLoader with a DistributedSampler gives.

    Example ``i`` is the window of ``block_size + 1`` tokens starting at ``i * block_size``.
    Each epoch every rank reads its shard (:func:`shard_indices`) in order, ``batch_size``
    examples at a time; then the next epoch draws a new permutation (``set_epoch``).
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, world_size: int = 1,
                 rank: int = 0, seed: int = 0):
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.n_examples = (len(tokens) - 1) // block_size
        self.epoch, self.pos = 0, 0
        self.order = shard_indices(self.n_examples, world_size, rank, seed=seed)
        if len(self.order) < batch_size:
            raise ValueError(f"each rank's shard has {len(self.order)} examples, fewer than batch_size={batch_size}")

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch ``(x, y)``, (batch_size, block_size) each."""
        if self.pos + self.batch_size > len(self.order):       # the shard is used up: next epoch
            self.epoch, self.pos = self.epoch + 1, 0
            self.order = shard_indices(self.n_examples, self.world_size, self.rank, seed=self.seed, epoch=self.epoch)
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return window_batch(self.tokens, [i * self.block_size for i in idx], self.block_size)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors an optimizer keeps (Adam: two per parameter), on this rank."""
    if hasattr(optimizer, "optim"):                           # ZeroRedundancyOptimizer: this rank's shard
        optimizer = optimizer.optim
    return _bytes(t for state in optimizer.state.values() for t in state.values() if t.dim() > 0)


def build(args: RunArgs, vocab_size: int, info: DistInfo, device: torch.device):
    """The GPT (``raw``), the model to call (DDP-wrapped when there are several ranks), the optimizer."""
    set_seed(args.seed)                                       # the same initial weights on every rank
    raw = GPT(GPTConfig(vocab_size=vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                        n_head=args.n_head, n_embd=args.n_embd)).to(device)
    model = raw
    if info.world_size > 1:   # DDP broadcasts rank 0's weights to all ranks and hooks the all-reduce into backward
        model = nn.parallel.DistributedDataParallel(raw, device_ids=[device] if device.type == "cuda" else None)
    groups = [{"params": [p for p in raw.parameters() if p.dim() >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in raw.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    if args.zero and info.world_size > 1:                     # ZeRO-1: each rank keeps its share of Adam's state
        from torch.distributed.optim import ZeroRedundancyOptimizer
        optimizer = ZeroRedundancyOptimizer(groups, optimizer_class=torch.optim.AdamW, lr=args.lr, betas=(0.9, 0.99))
    else:
        optimizer = fused_adamw(groups, lr=args.lr, betas=(0.9, 0.99))
    return raw, model, optimizer


def train(args: RunArgs) -> dict | None:
    """The program every rank runs. Rank 0 returns (and saves) the run's record; other ranks None.

    1. join the process group; build the same GPT on every rank, DDP-wrapped;
    2. each step, each rank takes its next ``grad_accum`` micro-batches from its shard and
       accumulates their gradients; DDP averages them over the ranks in the last backward;
    3. every rank clips and steps with the same averaged gradient, so the copies stay equal;
    4. rank 0 logs, saves ``model.pt`` (a ``state_dict``) and ``run.json``.
    """
    t_start = time.perf_counter()
    info = init_distributed(args.backend)
    device = torch.device(f"cuda:{info.local_rank}" if info.backend == "nccl" else "cpu")
    tokens, vocab_size = load_tokens(args)
    raw, model, optimizer = build(args, vocab_size, info, device)
    ddp = info.world_size > 1
    batches = ShardedWindows(tokens, args.block_size, args.batch_size, info.world_size, info.rank, args.seed)
    check = args.check_grads and ddp
    reference = copy.deepcopy(raw) if check else None         # the same weights, without DDP
    grad_check, losses, step_seconds = None, [], []
    t_ready = time.perf_counter()
    model.train()
    for step in range(args.steps):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup, args.lr_min)
        micro_batches = [tuple(t.to(device) for t in batches.next()) for _ in range(args.grad_accum)]
        step_loss = 0.0
        for i, (x, y) in enumerate(micro_batches):
            # no_sync: accumulate locally; DDP all-reduces once, in the last micro-batch's backward
            with model.no_sync() if ddp and i < args.grad_accum - 1 else contextlib.nullcontext():
                _, loss = model(x, y)                         # (B, T, V) logits, mean loss of this micro-batch
                (loss / args.grad_accum).backward()           # gradients of the mean over all micro-batches
            step_loss += loss.item() / args.grad_accum
        if step == 0 and check:
            grad_check = _compare_with_ddp(raw, reference, micro_batches)
        if step == 0 and args.save_grads and info.is_main:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            torch.save({n: p.grad for n, p in raw.named_parameters()}, Path(args.out) / "grads_step0.pt")
        torch.nn.utils.clip_grad_norm_(raw.parameters(), args.grad_clip)   # the same on every rank
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_seconds.append(time.perf_counter() - t0)
        losses.append(step_loss)
        if info.is_main and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss on rank 0's batch {step_loss:.4f}  {step_seconds[-1] * 1e3:6.1f} ms", flush=True)

    record = _finish(args, info, raw, optimizer, losses, step_seconds, grad_check, device,
                     startup=t_ready - t_start, seconds=time.perf_counter() - t_start)
    if ddp:
        dist.destroy_process_group()
    return record


def _compare_with_ddp(raw: nn.Module, reference: nn.Module, batches: list) -> dict:
    """Gradients of the same micro-batches by hand (backward, then average_gradients) against DDP's."""
    for x, y in batches:
        _, loss = reference(x, y)
        (loss / len(batches)).backward()
    local = [p.grad.clone() for p in reference.parameters()]   # this rank's own gradient
    average_gradients(reference)                                # the all-reduce, by hand
    pairs = list(zip(raw.parameters(), reference.parameters(), local))
    return {"max_diff_hand_vs_ddp": max((a.grad - b.grad).abs().max().item() for a, b, _ in pairs),
            "max_diff_local_vs_average": max((g - b.grad).abs().max().item() for _, b, g in pairs),
            "max_abs_grad": max(a.grad.abs().max().item() for a, _, _ in pairs)}


def _finish(args, info, raw, optimizer, losses, step_seconds, grad_check, device, *, startup, seconds) -> dict | None:
    """Average the logged losses over the ranks, gather facts from every rank, save on rank 0."""
    ddp = info.world_size > 1
    loss_t = torch.tensor(losses, dtype=torch.float64, device=device)
    n_params = sum(p.numel() for p in raw.parameters())
    me = {"rank": info.rank, "local_rank": info.local_rank, "pid": os.getpid(), "threads": torch.get_num_threads(),
          "env": {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                                 "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")},
          "optimizer_state_bytes": optimizer_state_bytes(optimizer), "grad_check": grad_check}
    everyone, allreduce_ms = [me], None
    if ddp:
        dist.all_reduce(loss_t, op=dist.ReduceOp.SUM)         # the loss of the whole global batch
        loss_t /= info.world_size
        everyone = [None] * info.world_size
        dist.all_gather_object(everyone, me)
        flat = torch.zeros(n_params, device=device)           # one all-reduce of all the gradients
        dist.all_reduce(flat)
        t0 = time.perf_counter()
        for _ in range(10):
            dist.all_reduce(flat)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        allreduce_ms = (time.perf_counter() - t0) / 10 * 1e3
    out = Path(args.out)
    if args.save_every_rank:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(raw.state_dict(), out / f"model_rank{info.rank}.pt")
    if ddp:
        dist.barrier()
    if not info.is_main:
        return None
    global_batch = args.batch_size * args.grad_accum * info.world_size
    timed = step_seconds[3:] if len(step_seconds) > 5 else step_seconds   # skip the first, slower steps
    step_s = sorted(timed)[len(timed) // 2]                   # the median step
    record = {"args": asdict(args), "world_size": info.world_size, "backend": info.backend or "none",
              "device": str(device), "n_params": n_params, "global_batch": global_batch,
              "tokens_per_step": global_batch * args.block_size, "loss": loss_t.tolist(),
              "step_seconds": step_seconds, "median_step_s": step_s,
              "tokens_per_s": global_batch * args.block_size / step_s, "startup_s": startup,
              "seconds": seconds, "allreduce_ms": allreduce_ms, "ranks": everyone}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(raw.state_dict(), out / "model.pt")
    (out / "run.json").write_text(json.dumps(record, indent=1))
    return record


# --------------------------------------------------------------------------- the command line


def parse_args(argv: list[str] | None = None) -> RunArgs:
    """``--steps 30 --batch-size 8 ...`` -> :class:`RunArgs` (ValueError on bad values)."""
    parser = argparse.ArgumentParser(prog="python -m aigc_helpers.distributed",
                                     description="Data-parallel training of the book's GPT on Shakespeare.")
    for f in fields(RunArgs):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help="(default off)")
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(flag, type=kind, default=f.default, help=f"(default {f.default})")
    return RunArgs(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    try:
        args = parse_args(argv)
    except ValueError as err:                                 # a bad value: one line, not a traceback
        sys.exit(f"python -m aigc_helpers.distributed: error: {err}")
    train(args)


# --------------------------------------------------------------------------- launching from Python


def free_port() -> int:
    """A TCP port that is free right now (the operating system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(nproc: int, args: list[str], port: int | None = None) -> list[str]:
    """The torchrun command line for ``nproc`` processes on this machine running this module."""
    if not isinstance(nproc, int) or nproc <= 0:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}")
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
            "--master_addr=127.0.0.1", f"--master_port={port or free_port()}",
            "-m", "aigc_helpers.distributed", *args]


def launch(nproc: int, args: list, *, threads: int = 1, timeout: float = 300) -> tuple[dict, float, str]:
    """Run the program under torchrun with ``nproc`` processes of ``threads`` threads each.

    Returns ``(run.json as a dict, wall-clock seconds including start-up, rank 0's log)``.
    ``args`` are command-line arguments, e.g. ``["--steps", 20, "--out", "runs/a"]``; they are
    checked here, so a bad one raises ``ValueError`` before any process starts. Each launch
    uses a port that is free at the time, so several launches can run side by side.
    """
    if not isinstance(threads, int) or threads <= 0:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    args = [str(a) for a in args]
    try:
        run_args = parse_args(args)                           # bad arguments fail here, not in a subprocess
    except SystemExit:                                        # argparse has printed what was wrong
        raise ValueError(f"bad arguments {args}; see python -m aigc_helpers.distributed --help") from None
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}     # read by torch in each process at start-up
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)                                    # torchrun sets these itself
    with tempfile.TemporaryDirectory(prefix="aigc-torchrun-tmp-") as scratch:
        env["TMPDIR"] = scratch        # torchrun's own log folders go here and are removed afterwards
        for attempt in range(2):       # a second try if another program took the free port in between
            t0 = time.perf_counter()
            done = subprocess.run(torchrun_command(nproc, args), env=env, capture_output=True, text=True,
                                  timeout=timeout)
            wall = time.perf_counter() - t0
            if done.returncode == 0 or "address already in use" not in done.stderr.lower():
                break
    if done.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads((Path(run_args.out) / "run.json").read_text())
    return record, wall, done.stdout


# --------------------------------------------------------------------------- memory beyond DDP


def training_memory(n_params: float, n_gpus: int = 1, stage: int = 0, precision: str = "mixed") -> dict[str, float]:
    """Bytes per GPU for the weights, gradients and Adam state of ``n_params`` parameters.

    ``precision="mixed"`` (Rajbhandari et al., 2020): 2-byte weights and gradients,
    and an optimizer state of 12 bytes per parameter (a 4-byte master copy of the
    weights, Adam's two 4-byte moments): 16 bytes per parameter in all.
    ``"fp32"``: 4-byte weights and gradients, 8 bytes of moments: also 16.
    ZeRO ``stage`` 1 splits the optimizer state over the ``n_gpus`` data-parallel ranks,
    stage 2 the gradients too, stage 3 (like FSDP) the weights too. Activations, buffers
    and fragmentation come on top.
    """
    if precision not in ("mixed", "fp32"):
        raise ValueError(f"precision must be 'mixed' or 'fp32', got {precision!r}")
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
    if not isinstance(n_gpus, int) or n_gpus <= 0 or n_params < 0:
        raise ValueError(f"need n_gpus >= 1 and n_params >= 0, got {n_gpus}, {n_params}")
    weights, grads, optim = (2, 2, 12) if precision == "mixed" else (4, 4, 8)
    return {"weights": n_params * weights / (n_gpus if stage >= 3 else 1),
            "gradients": n_params * grads / (n_gpus if stage >= 2 else 1),
            "optimizer": n_params * optim / (n_gpus if stage >= 1 else 1)}


if __name__ == "__main__":
    main()
