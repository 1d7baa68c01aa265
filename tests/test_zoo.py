import math

import torch

from aigc_helpers import set_seed, zoo
from aigc_helpers.data import char_dataset
from aigc_helpers.gpt import GPT, GPTConfig

DATA = char_dataset("to be, or not to be, that is the question:\n" * 40)
CFG = GPTConfig(vocab_size=DATA.tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32)


def test_train_lm_learns_and_evaluates_on_its_schedule():
    set_seed(0)
    m = GPT(CFG)
    recipe = zoo.LMRecipe(steps=60, batch_size=8, lr=3e-3, lr_min=3e-4, warmup=5, eval_every=30, eval_batches=2)
    h = zoo.train_lm(m, DATA, CFG.block_size, recipe, progress=False)
    assert len(h.loss) == 60 and h.eval_steps == [30, 60]                 # after steps 30 and 60
    assert h.last("val_loss") < math.log(CFG.vocab_size) - 1.0     # a repeated line is easy to learn


def test_train_lm_records_a_custom_eval_fn():
    set_seed(0)
    m = GPT(CFG)
    calls = []

    def probe(model):
        calls.append(model.training)
        return {"wte_norm": model.wte.weight.norm().item()}

    recipe = zoo.LMRecipe(steps=20, batch_size=4, eval_every=10)
    h = zoo.train_lm(m, DATA, CFG.block_size, recipe, progress=False, eval_fn=probe)
    assert set(h.evals) == {"wte_norm"} and len(h.evals["wte_norm"]) == len(h.eval_steps) >= 2
    assert calls and not any(calls)                                   # evaluated in eval mode
    assert torch.isfinite(torch.tensor(h.evals["wte_norm"])).all()
