import math

import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention


@pytest.fixture()
def qkv():
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))


def test_sdpa_matches_pytorch(qkv):
    q, k, v = qkv
    ref = F.scaled_dot_product_attention(q, k, v)
    assert (scaled_dot_product_attention(q, k, v) - ref).abs().max() <= 1e-5


def test_sdpa_masks_match_pytorch(qkv):
    q, k, v = qkv
    cm = causal_mask(6)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (scaled_dot_product_attention(q, k, v, cm) - ref).abs().max() <= 1e-5
    pm = padding_mask(torch.tensor([6, 4]), 6)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=pm)
    out, w = scaled_dot_product_attention(q, k, v, pm, return_weights=True)
    assert (out - ref).abs().max() <= 1e-5
    assert torch.all(w[1, :, :, 4:] == 0)  # padding gets no attention
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 6))


def test_sdpa_by_hand_on_a_tiny_example():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    w0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    out = scaled_dot_product_attention(q, k, v)
    assert out.item() == pytest.approx(10 * w0 + 20 * (1 - w0), rel=1e-6)


def test_multihead_matches_torch_multiheadattention_with_copied_weights():
    torch.manual_seed(0)
    d, h, T = 16, 4, 7
    x = torch.randn(3, T, d)
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True)
    for fast in (False, True):
        mine = MultiHeadAttention(d, h, fast=fast).load_from_torch(mha)
        ref, _ = mha(x, x, x, need_weights=False)
        assert (mine(x) - ref).abs().max() <= 1e-5
        ref, _ = mha(x, x, x, attn_mask=~causal_mask(T), need_weights=False)  # torch: True = blocked
        assert (mine(x, is_causal=True) - ref).abs().max() <= 1e-5
        lengths = torch.tensor([7, 5, 2])
        ref, _ = mha(x, x, x, key_padding_mask=~padding_mask(lengths, T)[:, 0, 0], need_weights=False)
        assert (mine(x, mask=padding_mask(lengths, T)) - ref).abs().max() <= 1e-5


def test_cross_attention_shapes_and_weights_kept():
    attn = MultiHeadAttention(8, 2, fast=False)
    out = attn(torch.randn(2, 3, 8), torch.randn(2, 5, 8), keep_weights=True)
    assert out.shape == (2, 3, 8) and attn.last_weights.shape == (2, 2, 3, 5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="same size"):
        scaled_dot_product_attention(torch.randn(2, 4), torch.randn(2, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match="lengths"):
        padding_mask(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="query"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 4))


def test_load_from_torch_refuses_modules_that_differ_in_biases():
    with pytest.raises(ValueError, match="bias"):
        MultiHeadAttention(16, 4).load_from_torch(torch.nn.MultiheadAttention(16, 4, bias=False, batch_first=True))
