"""The book's shared trained models: one recipe each, trained once, then cached.

A chapter that needs the Shakespeare GPT calls :func:`shakespeare_gpt`. The
first call trains it (with a progress bar) and stores the weights in the cache
(``~/.cache/aigc_helpers`` or ``$AIGC_CACHE``) under a key made from the
recipe; later calls, from any chapter, load it in a fraction of a second. So
every notebook still runs on its own, and none trains the same model twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .core import budget, get_device, set_seed
from .data import TextData, char_dataset, load_shakespeare
from .gpt import GPT, GPTConfig
from .train import History, fused_adamw, load_or_train, train


@dataclass
class LMRecipe:
    """How a character language model is trained (AdamW, warm-up, cosine decay)."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    lr_min: float = 2e-4
    warmup: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 20
    seed: int = 0


_DATA: dict[str, TextData] = {}


def shakespeare_data() -> TextData:
    """All of Shakespeare's modern-spelling texts, character-tokenized, 90 % / 10 % split (memoised)."""
    if "shakespeare" not in _DATA:
        _DATA["shakespeare"] = char_dataset(load_shakespeare(), val_frac=0.1)
    return _DATA["shakespeare"]


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: TextData, block_size: int, batch_size: int = 32,
                  batches: int = 20, seed: int = 1234) -> dict[str, float]:
    """Mean loss on ``batches`` fixed random batches of each split (the same batches every call)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for split in ("train", "val"):
        g = torch.Generator().manual_seed(seed)
        losses = [model(*data.batch(split, block_size, batch_size, generator=g, device=device))[1].item()
                  for _ in range(batches)]
        out[f"{split}_loss"] = sum(losses) / len(losses)
    model.train(was_training)
    return out


def train_lm(model: torch.nn.Module, data: TextData, block_size: int, recipe: LMRecipe, *,
             device=None, desc: str = "training", progress: bool = True,
             optimizer: torch.optim.Optimizer | None = None, eval_fn=None) -> History:
    """Train a character language model on ``data`` with ``recipe``; evaluates train/val loss.

    The optimizer is AdamW with the recipe's settings unless ``optimizer`` is given; the
    recipe's schedule then scales each of its parameter groups' learning rates. Every
    ``recipe.eval_every`` steps ``eval_fn(model) -> {name: value}`` is recorded in the
    history; by default it is :func:`estimate_loss` on ``recipe.eval_batches`` batches.
    """
    g = torch.Generator().manual_seed(recipe.seed)
    if optimizer is None and hasattr(model, "configure_optimizer"):
        optimizer = model.configure_optimizer(recipe.lr, recipe.weight_decay, recipe.betas)
    elif optimizer is None:
        optimizer = fused_adamw(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    return train(model, lambda: data.batch("train", block_size, recipe.batch_size, generator=g), recipe.steps,
                 optimizer=optimizer, grad_clip=recipe.grad_clip, warmup=recipe.warmup, lr_min=recipe.lr_min,
                 lr=recipe.lr, eval_fn=eval_fn or (lambda m: estimate_loss(m, data, block_size, batches=recipe.eval_batches)),
                 eval_every=recipe.eval_every, device=device, desc=desc, progress=progress)


def shakespeare_gpt_setup() -> tuple[GPTConfig, LMRecipe]:
    """The config and recipe of the book's Shakespeare GPT (bigger with ``AIGC_BUDGET=full``)."""
    vocab = shakespeare_data().tokenizer.vocab_size
    # Default: 400 steps of batch 32, 20 s on the 2-core CPU where it was chosen (45-55 s on the
    # slower ones measured since), which leaves the GPT chapter time for its GRU baseline.
    # For that budget two layers with twice the batch learn more than four layers with the same
    # number of characters (measured at 600 steps, about 30 s each: 1.87 vs 2.01 nats/char).
    config = GPTConfig(vocab_size=vocab, block_size=budget(64, 256), n_layer=budget(2, 6), n_head=budget(4, 6),
                       n_embd=budget(128, 384), dropout=budget(0.0, 0.2))
    recipe = LMRecipe(steps=budget(400, 5000), batch_size=budget(32, 64), lr=budget(6e-3, 1e-3),
                      lr_min=budget(6e-4, 1e-4), warmup=budget(50, 200), eval_every=budget(200, 500),
                      eval_batches=budget(10, 20))
    return config, recipe


def shakespeare_gpt(device=None, progress: bool = True) -> tuple[GPT, TextData, dict]:
    """The book's character-level GPT pretrained on Shakespeare: ``(model, data, info)``.

    ``info["result"]`` holds the training :class:`History` as a dict
    (``History.from_dict`` restores it); ``info["cached"]`` says whether it
    was loaded rather than trained.
    """
    data = shakespeare_data()
    config, recipe = shakespeare_gpt_setup()
    device = device or get_device()

    def build() -> GPT:
        set_seed(recipe.seed)
        return GPT(config)

    def fit(model: GPT) -> History:
        return train_lm(model, data, config.block_size, recipe, device=device, desc="GPT on Shakespeare",
                        progress=progress)

    model, info = load_or_train("shakespeare-gpt", {"gpt": asdict(config), "recipe": asdict(recipe),
                                                    "vocab": "".join(data.tokenizer.chars)},
                                build, fit, device=device)
    return model, data, info
