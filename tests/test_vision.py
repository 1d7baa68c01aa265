import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc_helpers import set_seed
from aigc_helpers.vision import CNNConfig, SmallCNN, accuracy, blur, conv2d, gaussian_kernel


def test_conv2d_by_hand_on_a_4x4_image():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    w = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])  # out[i, j] = x[i, j] - x[i+1, j+1]
    out = conv2d(x, w)
    assert out.shape == (1, 1, 3, 3)
    assert torch.equal(out, torch.full((1, 1, 3, 3), -5.0))
    out = conv2d(x, w, torch.tensor([2.0]), stride=2)
    assert torch.equal(out, torch.full((1, 1, 2, 2), -3.0))


@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, 3), (1, 1, 3), (2, 0, 3), (2, 1, 3), (3, 2, 5), (1, 0, 1), (2, 1, 4)])
def test_conv2d_matches_torch_multichannel(stride, padding, kernel):
    g = torch.Generator().manual_seed(stride * 10 + padding + kernel)
    x = torch.randn(2, 3, 9, 11, generator=g)
    w = torch.randn(4, 3, kernel, kernel, generator=g)
    b = torch.randn(4, generator=g)
    ours = conv2d(x, w, b, stride=stride, padding=padding)
    ref = F.conv2d(x, w, b, stride=stride, padding=padding)
    assert ours.shape == ref.shape
    assert ours.shape[-2] == (9 + 2 * padding - kernel) // stride + 1
    assert torch.allclose(ours, ref, atol=1e-5)


def test_conv2d_matches_nn_conv2d_with_copied_weights():
    set_seed(0)
    layer = nn.Conv2d(2, 5, 3, stride=2, padding=1)
    x = torch.randn(3, 2, 8, 8)
    with torch.no_grad():
        assert (conv2d(x, layer.weight, layer.bias, stride=2, padding=1) - layer(x)).abs().max() < 1e-5


def test_conv2d_rejects_bad_input():
    x = torch.randn(1, 3, 5, 5)
    with pytest.raises(ValueError, match="channels"):
        conv2d(x, torch.randn(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        conv2d(torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        conv2d(x, torch.randn(2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(x, torch.randn(2, 3, 7, 7))
    with pytest.raises(ValueError, match="bias"):
        conv2d(x, torch.randn(2, 3, 3, 3), torch.zeros(3))


def test_gaussian_blur_keeps_mass_and_smooths():
    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7)
    assert torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, k.T) and k[3, 3] == k.max()
    x = torch.zeros(1, 2, 15, 15)
    x[0, 0, 7, 7] = 1.0                               # a single bright pixel
    x[0, 1] = 0.3                                     # a flat channel
    y = blur(x, 1.0)
    assert y.shape == x.shape
    assert torch.allclose(y[0, 0, 4:11, 4:11], k, atol=1e-6)  # the impulse response is the kernel
    assert torch.allclose(y[0, 1], torch.full((15, 15), 0.3), atol=1e-6)  # flat stays flat, borders too
    assert torch.equal(blur(x, 0), x)
    with pytest.raises(ValueError, match="sigma"):
        blur(x, -1)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(0)


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (16, 3), (10, 1)])
def test_small_cnn_shapes_and_loss(size, channels):
    set_seed(0)
    model = SmallCNN(CNNConfig(in_channels=channels, image_size=size, n_classes=7, width=4, n_features=12))
    x = torch.rand(5, channels, size, size)
    y = torch.tensor([0, 1, 2, 3, 6])
    logits, loss = model(x, y)
    assert logits.shape == (5, 7)
    assert model.features(x).shape == (5, 12)
    assert torch.isclose(loss, F.cross_entropy(logits, y))
    assert model(x)[1] is None


def test_small_cnn_rejects_wrong_image_shape():
    model = SmallCNN(CNNConfig(image_size=8))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="image_size"):
        CNNConfig(image_size=2)


class _Fixed(nn.Module):
    """Predicts class (sum of pixels > 0) so the accuracy is known in advance."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, targets=None):
        positive = (x.sum((1, 2, 3)) > 0).float()
        return torch.stack([1 - positive, positive], -1), None


def test_accuracy_counts_correct_predictions_across_batches():
    x = torch.cat([torch.ones(7, 1, 2, 2), -torch.ones(3, 1, 2, 2)])
    y = torch.tensor([1] * 5 + [0] * 2 + [0] * 3)  # 5 + 3 right, 2 wrong
    assert accuracy(_Fixed(), x, y, batch_size=3) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="labels"):
        accuracy(_Fixed(), x, y[:4])
    with pytest.raises(ValueError, match="labels"):
        accuracy(_Fixed(), x[:0], y[:0])


def test_small_cnn_learns_digits_quickly():
    from aigc_helpers.data import load_digits
    from aigc_helpers.train import train

    set_seed(0)
    tr, te = load_digits("train"), load_digits("test")
    model = SmallCNN(CNNConfig(image_size=8, width=8, n_features=32))
    before = accuracy(model, te.x, te.y)
    train(model, tr.loader(64), 120, lr=3e-3, device="cpu", progress=False)
    after = accuracy(model, te.x, te.y)
    assert before < 0.3 and after > 0.9, (before, after)
