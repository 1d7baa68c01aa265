"""Training speed of the book's GPT, and its loss after a fixed number of iterations.

The configuration is nanoGPT's documented CPU run for character-level Shakespeare
(block 64, batch 12, 4 layers, 4 heads, width 128, no dropout; AdamW with
lr 1e-3 decaying to 1e-4 over the run, 100 warm-up steps, weight decay 0.1,
betas 0.9/0.99, gradient clipping at 1.0), so the numbers can be compared with
that implementation on the same machine.

    python benchmarks/gpt_cpu.py                 # tokens/s only (about half a minute)
    python benchmarks/gpt_cpu.py --iters 2000    # plus a full training run and its validation loss
"""

from __future__ import annotations

import argparse
import time

import torch

from aigc_helpers import set_seed, zoo
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=0, help="also train this many iterations and report the loss")
    ap.add_argument("--timed", type=int, default=100, help="iterations timed for tokens/s")
    args = ap.parse_args()

    data = zoo.shakespeare_data()
    config = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
                       dropout=0.0)
    recipe = zoo.LMRecipe(steps=max(args.iters, 1), batch_size=12, lr=1e-3, lr_min=1e-4, warmup=100,
                          weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_every=max(args.iters // 4, 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {config}")

    set_seed(0)
    model = GPT(config)
    optimizer = model.configure_optimizer(recipe.lr, recipe.weight_decay, recipe.betas)
    g = torch.Generator().manual_seed(0)
    batches = lambda: data.batch("train", config.block_size, recipe.batch_size, generator=g)  # noqa: E731
    train(model, batches, 10, optimizer=optimizer, progress=False, device="cpu")            # warm-up
    start = time.perf_counter()
    train(model, batches, args.timed, optimizer=optimizer, progress=False, device="cpu")
    seconds = time.perf_counter() - start
    tokens = args.timed * recipe.batch_size * config.block_size
    print(f"{1000 * seconds / args.timed:.1f} ms per iteration, {tokens / seconds:,.0f} tokens/s "
          f"(the training loop of the book, {args.timed} iterations)")

    if args.iters:
        set_seed(0)
        model = GPT(config)
        history = zoo.train_lm(model, data, config.block_size, recipe, device="cpu", desc="GPT, benchmark run")
        final = zoo.estimate_loss(model, data, config.block_size, batches=50)
        print(f"{args.iters} iterations in {history.seconds:.0f} s: train loss {final['train_loss']:.3f}, "
              f"validation loss {final['val_loss']:.3f} nats/char")


if __name__ == "__main__":
    main()
