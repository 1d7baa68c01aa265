"""The GPT chapter's race at any size: a GPT against a GRU with as many parameters and the same time.

The GRU's hidden size is chosen so that it has about as many parameters as the GPT
(:func:`aigc_helpers.rnn.hidden_dim_for`). Both models first run a few timed steps on
this machine; the GRU then gets as many training steps as fit in the GPT's time, so the
race is fair on any hardware: on a CPU a GRU step costs more than a GPT step, on a GPU
far more. Both use the same recipe (AdamW, warm-up, cosine decay, clipping) and the same
batches, and are scored on the same validation batches.

    python benchmarks/gpt_vs_gru.py             # the chapter's default race (about a minute on 2 cores)
    python benchmarks/gpt_vs_gru.py --n-layer 4 --n-embd 192 --n-head 6 --block 128 \\
        --steps 2000 --lr 2e-3 --warmup 100     # 1.8 M parameters (about 27 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from aigc_helpers import get_device, set_seed, zoo
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.rnn import GRULM, GRUConfig, hidden_dim_for
from aigc_helpers.train import train


def seconds_per_step(model: torch.nn.Module, batches, device, steps: int, warmup: int = 3) -> float:
    """Mean wall time of one training step of the book's loop, after ``warmup`` untimed steps."""
    train(model, batches, warmup, progress=False, device=device)
    return train(model, batches, steps, progress=False, device=device).seconds / steps   # .item() syncs a GPU


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block", type=int, default=64, help="context length in characters")
    ap.add_argument("--steps", type=int, default=400, help="the GPT's training steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-3, help="peak learning rate; it decays to a tenth")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--embed-dim", type=int, default=64, help="the GRU's embedding size (the source article's 64)")
    ap.add_argument("--gru-steps", type=int, default=0, help="fix the GRU's steps instead of matching the time")
    ap.add_argument("--timed", type=int, default=10, help="steps timed per model to match the time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    args = ap.parse_args()

    device = args.device or get_device()
    data = zoo.shakespeare_data()
    V = data.tokenizer.vocab_size
    config = GPTConfig(vocab_size=V, block_size=args.block, n_layer=args.n_layer, n_head=args.n_head,
                       n_embd=args.n_embd, dropout=0.0)
    recipe = zoo.LMRecipe(steps=args.steps, batch_size=args.batch, lr=args.lr, lr_min=args.lr / 10,
                          warmup=args.warmup, eval_every=args.steps, eval_batches=20, seed=args.seed)
    n_gpt = sum(p.numel() for p in GPT(config).parameters())
    gru_config = GRUConfig(vocab_size=V, embed_dim=args.embed_dim,
                           hidden_dim=hidden_dim_for(n_gpt, V, args.embed_dim))
    builders = {"GPT": lambda: GPT(config), "GRU": lambda: GRULM(gru_config)}
    print(f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads); {config}")

    g = torch.Generator().manual_seed(12345)
    batches = lambda: data.batch("train", args.block, args.batch, generator=g)  # noqa: E731
    step_time = {name: seconds_per_step(build(), batches, device, args.timed) for name, build in builders.items()}
    gru_steps = args.gru_steps or max(1, round(args.steps * step_time["GPT"] / step_time["GRU"]))
    print(f"one step: GPT {1000 * step_time['GPT']:.1f} ms, GRU {1000 * step_time['GRU']:.1f} ms; "
          f"the GRU gets {gru_steps} steps to the GPT's {args.steps}")

    results = {}
    for name, steps in (("GPT", args.steps), ("GRU", gru_steps)):
        set_seed(args.seed)
        model = builders[name]()
        rec = replace(recipe, steps=steps, eval_every=steps)
        history = zoo.train_lm(model, data, args.block, rec, device=device, desc=name)
        val = zoo.estimate_loss(model, data, args.block, batches=recipe.eval_batches)["val_loss"]
        results[name] = (sum(p.numel() for p in model.parameters()), steps, history.seconds, val)

    print(f"{'model':6}{'parameters':>12}{'steps':>8}{'seconds':>9}{'val loss':>10}")
    for name, (n, steps, seconds, val) in results.items():
        print(f"{name:6}{n:>12,}{steps:>8}{seconds:>9.0f}{val:>10.3f}")
    gap = results["GPT"][3] - results["GRU"][3]
    print(f"GPT minus GRU: {gap:+.3f} nats/char ({'GPT' if gap < 0 else 'GRU'} ahead)")


if __name__ == "__main__":
    main()
