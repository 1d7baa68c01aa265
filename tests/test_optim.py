import pytest
import torch
from torch import nn

from aigc_helpers import set_seed
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.optim import Muon, muon, orthogonalize


@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (32, 32)])
def test_orthogonalize_keeps_singular_vectors_and_flattens_singular_values(shape):
    g = torch.Generator().manual_seed(0)
    k = min(shape)
    U0, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=g))
    V0, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=g))
    G = U0 @ torch.diag(torch.logspace(0, 1.5, k)) @ V0.T        # singular values from 1 to about 32
    X = orthogonalize(G)
    assert X.shape == G.shape
    s_in, s_out = torch.linalg.svdvals(G), torch.linalg.svdvals(X)
    assert s_in.max() / s_in.min() > 30                      # a badly conditioned gradient...
    assert s_out.min() > 0.6 and s_out.max() < 1.25          # ...comes out with all singular values near 1
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    assert torch.dist(X, U @ Vh) / torch.linalg.norm(U @ Vh) < 0.3   # close to the exact polar factor U V^T


def test_orthogonalize_rejects_non_matrices():
    with pytest.raises(ValueError, match="matrix"):
        orthogonalize(torch.randn(3, 4, 5))


def test_adamw_groups_match_pytorch_adamw():
    set_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours = Muon([dict(params=a.parameters(), lr=1e-2, weight_decay=0.1)], betas=(0.9, 0.99))
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
    x = torch.randn(16, 5)
    for _ in range(5):
        for m, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_muon_update_of_a_matrix_is_orthogonal():
    w = nn.Parameter(torch.zeros(8, 4))
    opt = Muon([dict(params=[w], muon=True, lr=1.0, momentum=0.0)])
    w.grad = torch.randn(8, 4)
    opt.step()
    s = torch.linalg.svdvals(-w.detach() / 2 ** 0.5)            # tall matrix: step scaled by sqrt(8/4)
    assert s.min() > 0.6 and s.max() < 1.25


def test_muon_two_steps_follow_the_nesterov_momentum_formula():
    """buf = mu buf + g;  w = (1 - lr wd) w - lr sqrt(max(1, rows/cols)) orthogonalize(g + mu buf)."""
    g = torch.Generator().manual_seed(0)
    w0, g1, g2 = (torch.randn(6, 4, generator=g) for _ in range(3))
    lr, mu, wd, scale = 0.1, 0.9, 0.1, (6 / 4) ** 0.5
    w = nn.Parameter(w0.clone())
    opt = Muon([dict(params=[w], muon=True, lr=lr, momentum=mu, weight_decay=wd)])
    want, buf = w0.clone(), torch.zeros(6, 4)
    for grad in (g1, g2):
        w.grad = grad.clone()
        opt.step()
        buf = mu * buf + grad
        want = (1 - lr * wd) * want - lr * scale * orthogonalize(grad + mu * buf)
    torch.testing.assert_close(opt.state[w]["momentum"], mu * g1 + g2)
    torch.testing.assert_close(w.detach(), want)


def test_muon_rejects_vectors_in_muon_groups():
    with pytest.raises(ValueError, match="2-D"):
        Muon([dict(params=[nn.Parameter(torch.zeros(3))], muon=True)])


def test_muon_for_a_gpt_splits_parameters_and_trains():
    set_seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32)
    m = GPT(cfg)
    opt = muon(m, lambda n: n.startswith("blocks."), lr=0.02, adam_lr=3e-3)
    inner = {id(p) for g in opt.param_groups if g["muon"] for p in g["params"]}
    assert id(m.wte.weight) not in inner and id(m.blocks[0].attn.c_attn.weight) in inner
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters()))
    idx = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(0))
    first = None
    for _ in range(60):
        _, loss = m(idx[:, :-1], idx[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first                          # memorises a tiny batch


def test_muon_helper_needs_a_hidden_matrix():
    with pytest.raises(ValueError, match="hidden"):
        muon(nn.Linear(3, 3), lambda n: False)
