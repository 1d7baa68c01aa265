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


def test_gpt_vs_gru_benchmark_matches_parameters_and_time(monkeypatch, capsys):
    import re
    import runpy
    import sys
    from pathlib import Path

    monkeypatch.setattr(zoo, "shakespeare_data", lambda: DATA)
    script = Path(__file__).parents[1] / "benchmarks" / "gpt_vs_gru.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--n-layer", "1", "--n-embd", "64", "--n-head", "4", "--block", "16",
                                      "--steps", "30", "--batch", "4", "--embed-dim", "8", "--timed", "3",
                                      "--device", "cpu"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    rows = {m[0]: (int(m[1].replace(",", "")), int(m[2]), float(m[4]))
            for m in re.findall(r"^(GPT|GRU)\s+([\d,]+)\s+(\d+)\s+(\d+)\s+([\d.]+)$", out, re.M)}
    (n_gpt, steps_gpt, loss_gpt), (n_gru, steps_gru, loss_gru) = rows["GPT"], rows["GRU"]
    assert steps_gpt == 30 and steps_gru >= 1
    assert abs(n_gru - n_gpt) / n_gpt < 0.1                  # about as many parameters
    assert max(loss_gpt, loss_gru) < math.log(CFG.vocab_size)  # both learned something in 30 steps
    verdict = re.search(r"GPT minus GRU: ([-+][\d.]+) nats/char \((GPT|GRU) ahead\)", out)
    gap = float(verdict[1])
    assert abs(gap - (loss_gpt - loss_gru)) <= 0.0011          # the two losses were rounded to 3 decimals
    assert (verdict[2] == "GPT") == (gap < 0)
