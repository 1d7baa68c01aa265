"""Data parallelism: sharding, the hand-written all-reduce, DDP against one process, memory arithmetic."""

import json
from collections import Counter

import pytest
import torch
from torch.utils.data import DistributedSampler

from aigc_helpers.distributed import (RunArgs, ShardedWindows, launch, parse_args, pick_backend, shard_indices,
                                      torchrun_command, train, training_memory)

TINY = dict(steps=3, max_chars=20_000, block_size=16, n_layer=1, n_head=2, n_embd=32, warmup=1, log_every=1)


def tiny_argv(**kw) -> list[str]:
    argv = []
    for k, v in {**TINY, **kw}.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return argv


def load(path):
    return torch.load(path, weights_only=True)


def rel_diff(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a)
    return (num / sum((b[k] ** 2).sum() for k in b)).sqrt().item()


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("n,world", [(10, 2), (10, 4), (7, 3), (12, 3), (5, 1)])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shard_indices_is_distributed_samplers_rule(n, world, shuffle, drop_last):
    for epoch in (0, 3):
        ours = [shard_indices(n, world, r, shuffle=shuffle, seed=5, epoch=epoch, drop_last=drop_last)
                for r in range(world)]
        theirs = []
        for r in range(world):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=shuffle, seed=5,
                                         drop_last=drop_last)
            sampler.set_epoch(epoch)
            theirs.append(list(sampler))
        assert ours == theirs


def test_shards_cover_every_example_exactly_once_and_pad_equally():
    even = [shard_indices(12, 4, r, seed=1) for r in range(4)]
    assert sorted(sum(even, [])) == list(range(12))
    assert [len(s) for s in even] == [3] * 4
    padded = Counter(sum((shard_indices(10, 4, r) for r in range(4)), []))
    assert set(padded) == set(range(10)) and sorted(padded.values()) == [1] * 8 + [2] * 2
    dropped = sum((shard_indices(10, 4, r, drop_last=True) for r in range(4)), [])
    assert len(dropped) == len(set(dropped)) == 8
    assert shard_indices(10, 2, 0, epoch=0) != shard_indices(10, 2, 0, epoch=1)   # a new order each epoch


def test_ranks_micro_batches_together_are_the_single_process_batch():
    tokens = torch.arange(2000) % 97
    one = ShardedWindows(tokens, block_size=8, batch_size=6, world_size=1, rank=0, seed=3)
    ranks = [ShardedWindows(tokens, block_size=8, batch_size=3, world_size=2, rank=r, seed=3) for r in range(2)]
    for _ in range(50):                                      # 50 steps: past the end of the first epoch
        x1, y1 = one.next()
        x2, y2 = (torch.cat(t) for t in zip(*(r.next() for r in ranks)))
        assert x1.shape == (6, 8) and torch.equal(y1[:, :-1], x1[:, 1:])
        rows = lambda x: sorted(map(tuple, x.tolist()))     # noqa: E731  order inside a batch does not matter
        assert rows(x1) == rows(x2) and rows(y1) == rows(y2)
    assert one.epoch == ranks[0].epoch == 1


# --------------------------------------------------------------------------- training


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    big = train(RunArgs(**TINY, batch_size=8, save_grads=True, out=str(tmp_path / "big")))
    acc = train(RunArgs(**TINY, batch_size=4, grad_accum=2, save_grads=True, out=str(tmp_path / "acc")))
    small = train(RunArgs(**TINY, batch_size=4, save_grads=True, out=str(tmp_path / "small")))
    assert acc["global_batch"] == big["global_batch"] == 8 and acc["world_size"] == 1
    assert rel_diff(load(tmp_path / "acc/grads_step0.pt"), load(tmp_path / "big/grads_step0.pt")) < 1e-5
    assert rel_diff(load(tmp_path / "acc/model.pt"), load(tmp_path / "big/model.pt")) < 1e-4
    assert max(abs(a - b) for a, b in zip(acc["loss"], big["loss"])) < 1e-5
    # control: half the batch alone is a different step
    assert rel_diff(load(tmp_path / "small/grads_step0.pt"), load(tmp_path / "big/grads_step0.pt")) > 1e-2
    saved = json.loads((tmp_path / "big/run.json").read_text())
    assert saved["loss"] == big["loss"] and saved["n_params"] == sum(v.numel() for k, v in
                                                                     load(tmp_path / "big/model.pt").items()
                                                                     if k != "lm_head.weight")


def test_two_gloo_processes_train_like_one_process(tmp_path):
    two, wall, log = launch(2, tiny_argv(batch_size=4, backend="gloo", check_grads=True, save_grads=True,
                                         save_every_rank=True, out=tmp_path / "two"), threads=2)
    one = train(RunArgs(**TINY, batch_size=8, save_grads=True, out=str(tmp_path / "one")))
    assert two["world_size"] == 2 and two["global_batch"] == one["global_batch"] == 8 and wall > 0
    assert "step    2" in log and log.count("step ") == 3                      # only rank 0 logs
    ranks = two["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["threads"] == 2 for r in ranks)   # OMP_NUM_THREADS=2
    assert [r["env"]["RANK"] for r in ranks] == ["0", "1"] and {r["env"]["WORLD_SIZE"] for r in ranks} == {"2"}
    assert len({r["env"]["MASTER_PORT"] for r in ranks}) == 1
    # the hand-written all-reduce gives DDP's gradients, and averaging changed each rank's own gradient
    for r in ranks:
        c = r["grad_check"]
        assert c["max_diff_hand_vs_ddp"] <= 1e-6 * c["max_abs_grad"]
        assert c["max_diff_local_vs_average"] > 1e-3 * c["max_abs_grad"]
    # the ranks stay identical, and they equal one process on the concatenated batch
    r0, r1 = load(tmp_path / "two/model_rank0.pt"), load(tmp_path / "two/model_rank1.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert rel_diff(load(tmp_path / "two/grads_step0.pt"), load(tmp_path / "one/grads_step0.pt")) < 1e-5
    assert rel_diff(load(tmp_path / "two/model.pt"), load(tmp_path / "one/model.pt")) < 1e-4
    assert max(abs(a - b) for a, b in zip(two["loss"], one["loss"])) < 1e-5
    assert two["allreduce_ms"] > 0


# --------------------------------------------------------------------------- memory


def test_training_memory_reproduces_the_zero_paper():
    # Rajbhandari et al. (2020), Figure 1: 7.5 B parameters, 64 GPUs
    gb = [round(sum(training_memory(7.5e9, 64, s).values()) / 1e9, 1) for s in range(4)]
    assert gb == [120.0, 31.4, 16.6, 1.9]
    fp32 = training_memory(1000, precision="fp32")
    assert fp32 == {"weights": 4000, "gradients": 4000, "optimizer": 8000}
    assert training_memory(1000, 4, 2) == {"weights": 2000, "gradients": 500, "optimizer": 3000}


def test_fp32_adamw_state_is_eight_bytes_per_parameter():
    from aigc_helpers.distributed import optimizer_state_bytes
    model = torch.nn.Linear(7, 5)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 7)).sum().backward()
    opt.step()
    assert optimizer_state_bytes(opt) == training_memory(40, precision="fp32")["optimizer"] == 320


# --------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("kw,match", [({"steps": 0}, "steps"), ({"batch_size": -1}, "batch_size"),
                                      ({"grad_accum": 1.5}, "grad_accum"), ({"n_embd": 30}, "divisible"),
                                      ({"lr": 0.0}, "lr"), ({"lr_min": 1.0}, "lr_min"),
                                      ({"backend": "mpi"}, "backend"), ({"max_chars": -5}, "max_chars")])
def test_bad_run_arguments_raise_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        RunArgs(**kw)


def test_bad_calls_raise_value_errors():
    with pytest.raises(ValueError, match="rank"):
        shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="at least one"):
        shard_indices(0, 2, 0)
    with pytest.raises(ValueError, match="nproc"):
        torchrun_command(0, [])
    with pytest.raises(ValueError, match="bad arguments"):
        launch(1, ["--no-such-option", "3"])
    with pytest.raises(ValueError, match="threads"):
        launch(1, [], threads=0)
    with pytest.raises(ValueError, match="stage"):
        training_memory(10, 2, stage=4)
    with pytest.raises(ValueError, match="precision"):
        training_memory(10, precision="fp8")
    with pytest.raises(ValueError, match="too little text"):
        train(RunArgs(max_chars=50, block_size=64))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl"):
            pick_backend("nccl")
        assert pick_backend("auto") == "gloo"


def test_command_line_parses_into_run_args():
    args = parse_args(["--steps", "7", "--batch-size", "3", "--zero", "--lr", "0.01"])
    assert (args.steps, args.batch_size, args.zero, args.lr, args.grad_accum) == (7, 3, True, 0.01, 1)
    cmd = torchrun_command(2, ["--steps", "7"], port=29511)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=2"] and "--master_port=29511" in cmd
    assert cmd[-4:] == ["-m", "aigc_helpers.distributed", "--steps", "7"]
