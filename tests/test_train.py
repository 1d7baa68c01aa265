import math

from pathlib import Path

import pytest
import torch
from torch import nn

from aigc_helpers import set_seed
from aigc_helpers.train import (History, KeepBest, config_key, fused_adamw, load_checkpoint, load_or_train, lr_at, save_checkpoint,
                                train)


class Regressor(nn.Module):
    """A tiny model with the (output, loss) face."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x, y=None):
        out = self.lin(x).squeeze(-1)
        return out, (None if y is None else ((out - y) ** 2).mean())


def make_batch(generator=None):
    x = torch.randn(64, 3, generator=generator)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def test_train_reduces_loss_and_records_history():
    set_seed(0)
    model = Regressor()
    g = torch.Generator().manual_seed(0)
    evals = []

    def eval_fn(m):
        x, y = make_batch(torch.Generator().manual_seed(99))
        loss = m(x, y)[1].item()
        evals.append(loss)
        return {"val_loss": loss}

    h = train(model, lambda: make_batch(g), 200, lr=0.05, eval_fn=eval_fn, eval_every=50,
              device="cpu", progress=False)
    assert len(h.loss) == 200 and h.steps[-1] == 199
    assert h.loss[-1] < 0.01 * h.loss[0]
    assert h.eval_steps == [50, 100, 150, 200]
    assert h.last("val_loss") == evals[-1] < 1e-3
    assert not model.training  # left in eval mode


def test_train_accepts_a_dataloader_and_restarts_it():
    x, y = make_batch(torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    h = train(Regressor(), loader, 10, device="cpu", progress=False)  # 4 batches per epoch
    assert len(h.loss) == 10


def test_custom_loss_fn_and_step_fn():
    model = Regressor()
    g = torch.Generator().manual_seed(0)
    seen = []

    def double_mse(m, b):                       # a loss the default could never return
        seen.append(m(*b)[1].item())
        return 2 * m(*b)[1]

    h = train(model, lambda: make_batch(g), 5, loss_fn=double_mse, device="cpu", progress=False)
    assert len(seen) == 5 and h.loss == pytest.approx([2 * v for v in seen])
    calls = []
    h = train(model, lambda: make_batch(g), 3, step_fn=lambda b, s: calls.append(s) or {"loss": s, "d": 2 * s},
              device="cpu", progress=False)
    assert calls == [0, 1, 2] and h.loss == [0, 1, 2] and h.logs["d"] == [0, 2, 4]


def test_gradient_clipping_bounds_the_update():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    batch = (torch.tensor([[1.0]]), torch.tensor([[1e6]]))
    train(model, lambda: batch, 1, lr=1.0, loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
          optimizer=torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=0.5, device="cpu", progress=False)
    assert abs(model.weight.item()) == pytest.approx(0.5)


def test_nan_loss_raises_clear_error():
    model = Regressor()
    with pytest.raises(FloatingPointError, match="learning rate"):
        train(model, lambda: make_batch(), 2, loss_fn=lambda m, b: m(*b)[1] * float("nan"),
              device="cpu", progress=False)


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, warmup=10, lr_min=0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, warmup=10, lr_min=0.1) == pytest.approx(0.1)
    mid = lr_at(55, 100, 1.0, warmup=10, lr_min=0.0)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(50, 100, 1.0) == 1.0  # constant without lr_min


def test_scheduler_is_applied_in_train():
    h = train(Regressor(), lambda: make_batch(), 20, lr=0.1, warmup=5, lr_min=0.01, device="cpu", progress=False)
    assert h.lr[0] == pytest.approx(0.02) and h.lr[4] == pytest.approx(0.1) and h.lr[-1] < 0.02


def test_fused_adamw_makes_the_same_updates_as_adamw():
    def run(make):
        set_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        opt = make(model.parameters())
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            x = torch.randn(16, 4, generator=g)
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return opt, torch.cat([p.detach().flatten() for p in model.parameters()])
    opt, fused = run(lambda ps: fused_adamw(ps, lr=1e-2, weight_decay=0.1))
    _, plain = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1
    assert torch.allclose(fused, plain, atol=1e-6)
    _, untrained = run(lambda ps: fused_adamw(ps, lr=0.0))
    assert not torch.allclose(fused, untrained, atol=1e-3)              # the comparison above can fail


def test_checkpoint_roundtrip_and_config_check(tmp_path):
    set_seed(0)
    a, b = Regressor(), Regressor()
    path = save_checkpoint(a, tmp_path / "m.pt", config={"width": 3}, extra={"acc": 0.5})
    assert load_checkpoint(b, path, config={"width": 3}) == {"acc": 0.5}
    assert torch.equal(a.lin.weight, b.lin.weight)
    with pytest.raises(ValueError, match="config"):
        load_checkpoint(b, path, config={"width": 4})
    with pytest.raises(FileNotFoundError):
        load_checkpoint(b, tmp_path / "missing.pt")
    # the file holds only tensors and plain data: loadable with weights_only=True
    torch.load(path, weights_only=True)


def test_config_key_is_stable_and_sensitive():
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_load_or_train_caches_and_rejects_changed_config(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    fits = []

    def fit(model):
        fits.append(1)
        return train(model, lambda: make_batch(), 30, lr=0.05, device="cpu", progress=False)

    def build():
        return Regressor()

    m1, info1 = load_or_train("reg", {"lr": 0.05}, build, fit, device="cpu")
    m2, info2 = load_or_train("reg", {"lr": 0.05}, build, fit, device="cpu")
    assert len(fits) == 1 and not info1["cached"] and info2["cached"]
    assert torch.equal(m1.lin.weight, m2.lin.weight)
    assert History.from_dict(info2["result"]).loss == info1["result"]["loss"]
    m3, info3 = load_or_train("reg", {"lr": 0.01}, build, fit, device="cpu")  # changed config: trains again
    assert len(fits) == 2 and not info3["cached"] and info3["path"] != info1["path"]


def test_load_or_train_retrains_over_a_corrupt_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    fits = []

    def fit(model):
        fits.append(1)
        return {"fits": len(fits)}

    def build():
        torch.manual_seed(0)
        return Regressor()

    _, info = load_or_train("reg", {"lr": 0.05}, build, fit, device="cpu")
    good = Path(info["path"]).read_bytes()
    for damaged in (b"", good[:100], b"not a checkpoint\n"):
        Path(info["path"]).write_bytes(damaged)
        model, again = load_or_train("reg", {"lr": 0.05}, build, fit, device="cpu")
        assert not again["cached"] and torch.equal(model.lin.weight, build().lin.weight)
    assert len(fits) == 4


def test_train_with_an_optimizer_decays_each_group_to_lr_min_over_lr_of_its_rate():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.02}])
    h = train(model, lambda: make_batch(), 50, optimizer=opt, lr=0.1, lr_min=0.01, device="cpu", progress=False,
              loss_fn=lambda m, b: ((m(b[0]).squeeze(1) - b[1]) ** 2).mean())
    assert h.lr[0] == pytest.approx(0.1) and h.lr[-1] == pytest.approx(0.01, rel=0.01)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.002, rel=0.01)     # the same ratio for every group


def test_keep_best_keeps_and_restores_the_lowest_weights():
    class Scripted(KeepBest):            # reports a fixed sequence of losses
        def __init__(self, losses):
            super().__init__()
            self.losses = iter(losses)

        def measure(self, model):
            return {"val_loss": next(self.losses)}

    model = nn.Linear(2, 1)
    keeper = Scripted([3.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="no evaluation"):
        keeper.restore(model)
    snapshots = []
    for value in range(3):
        with torch.no_grad():
            model.weight.fill_(float(value))
        snapshots.append(model.weight.clone())
        assert keeper(model) == {"val_loss": [3.0, 1.0, 2.0][value]}
    assert keeper.best_loss == 1.0 and keeper.best_call == 1 and keeper.calls == 3
    keeper.restore(model)
    assert torch.equal(model.weight, snapshots[1])     # the weights of the lowest loss, not the last
    with pytest.raises(NotImplementedError):
        KeepBest()(model)
