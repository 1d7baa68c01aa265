import math

import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.transformer import Seq2SeqConfig, Seq2SeqTransformer, sinusoidal_encoding


def test_positional_encoding_formula():
    pe = sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16)
    for pos, i in [(0, 0), (3, 2), (17, 5), (49, 7)]:
        angle = pos / 10000 ** (2 * i / 16)
        assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(4, 5)


def test_relative_position_is_a_linear_map():
    """PE(pos + k) = M_k PE(pos): each (sin, cos) pair is rotated by the angle w_i k, whatever pos is."""
    d, k = 8, 5
    pe = sinusoidal_encoding(64, d)
    M = torch.zeros(d, d)
    for i in range(d // 2):
        w = 10000 ** (-2 * i / d)
        c, s = math.cos(w * k), math.sin(w * k)
        M[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[c, s], [-s, c]])
    assert (pe[:-k] @ M.T - pe[k:]).abs().max() < 1e-4


def test_seq2seq_shapes_loss_and_padding():
    set_seed(0)
    m = Seq2SeqTransformer(Seq2SeqConfig(src_vocab=10, tgt_vocab=12, max_len=16, d_model=32, n_head=2, n_layer=1, d_ff=64))
    src = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    tgt = torch.tensor([[1, 5, 4], [1, 7, 6]])
    targets = torch.tensor([[5, 4, 3], [7, 6, 0]])
    logits, loss = m(src, tgt, targets)
    assert logits.shape == (2, 3, 12) and loss.item() > 0
    keep = targets != 0                                      # the loss averages over the 5 non-pad targets
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[keep], targets[keep]).item(), abs=1e-6)
    # padding in the source does not change the output
    wider = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1)
    assert torch.allclose(m(wider, tgt)[0], logits, atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 20, dtype=torch.long), tgt[:1])
    with pytest.raises(ValueError, match="token ids"):
        m(torch.full((1, 3), 99), tgt[:1])


@pytest.mark.parametrize("pre_ln", [True, False])
def test_seq2seq_learns_to_copy(pre_ln):
    set_seed(0)
    cfg = Seq2SeqConfig(src_vocab=8, tgt_vocab=8, max_len=8, d_model=32, n_head=2, n_layer=1, d_ff=64, pre_ln=pre_ln)
    m = Seq2SeqTransformer(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        src = torch.randint(2, 8, (32, 5), generator=g)
        tgt_in = torch.cat([torch.ones(32, 1, dtype=torch.long), src[:, :-1]], 1)
        _, loss = m(src, tgt_in, src)
        opt.zero_grad()
        loss.backward()
        opt.step()
    src = torch.randint(2, 8, (64, 5), generator=g)
    out = m.eval().greedy_decode(src, bos_id=1, max_len=5)
    assert (out == src).all(1).float().mean() > 0.9


def test_encoder_masks_padding_wherever_it_is_and_greedy_decode_takes_the_full_length():
    set_seed(0)
    cfg = Seq2SeqConfig(src_vocab=8, tgt_vocab=8, d_model=16, n_head=2, n_layer=1, d_ff=32, max_len=6, pad_id=0)
    m = Seq2SeqTransformer(cfg).eval()
    _, mask = m.encode(torch.tensor([[0, 0, 5, 6], [5, 6, 7, 0]]))
    assert mask[:, 0, 0].tolist() == [[False, False, True, True], [True, True, True, False]]
    _, mask = m.encode(torch.tensor([[0, 0]]))                           # padding only: one key kept
    assert mask[0, 0, 0].tolist() == [True, False]
    assert m.greedy_decode(torch.tensor([[5, 6]]), bos_id=1, max_len=cfg.max_len).shape == (1, cfg.max_len)
    with pytest.raises(ValueError, match="max_len"):
        m.greedy_decode(torch.tensor([[5, 6]]), bos_id=1, max_len=cfg.max_len + 1)
