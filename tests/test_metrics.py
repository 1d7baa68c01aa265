import math

import pytest
import torch

from aigc_helpers.metrics import bits_per_char, frechet_distance, get_judge, judge_config, perplexity


def test_perplexity_and_bits_per_char():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(65)) == pytest.approx(65)       # uniform over 65 characters
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(math.log(65)) == pytest.approx(math.log2(65))


def test_frechet_distance_is_zero_for_identical_sets():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x[torch.randperm(200)]) == pytest.approx(0.0, abs=1e-6)  # order does not matter


def test_frechet_distance_one_dimensional_closed_form():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 1, generator=g) * 2.0 + 1.0
    b = torch.randn(300, 1, generator=g) * 0.5 - 3.0
    # 1-D Gaussians: d^2 = (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 (sample statistics, N-1)
    want = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert frechet_distance(a, b) == pytest.approx(want.item(), rel=1e-5)
    assert frechet_distance(a, b) == pytest.approx(16 + 2.25, rel=0.1)  # close to the population value


def gaussian_sample(n, mean, std, seed):
    """``n`` points whose sample mean is ``mean`` and sample covariance is exactly ``diag(std**2)``."""
    x = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))            # orthonormal columns, each with mean 0
    return q * (n - 1) ** 0.5 * torch.tensor(std, dtype=torch.float64) + torch.tensor(mean, dtype=torch.float64)


def test_frechet_distance_diagonal_closed_form_and_symmetry():
    a = gaussian_sample(300, [1.0, 0.0, 0.0], [1.0, 2.0, 3.0], seed=2)
    b = gaussian_sample(200, [0.0, 0.0, 0.0], [2.0, 2.0, 1.0], seed=3)
    # diagonal covariances: d^2 = |mu_a - mu_b|^2 + sum_i (sigma_a,i - sigma_b,i)^2 = 1 + 1 + 0 + 4
    d = frechet_distance(a, b)
    assert d == pytest.approx(6.0, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(d, rel=1e-6)
    # shifting both sets by the same vector changes nothing; shifting one adds |shift|^2
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert frechet_distance(a + shift, b + shift) == pytest.approx(d, rel=1e-6)
    assert frechet_distance(a + shift, a) == pytest.approx(shift.pow(2).sum().item(), rel=1e-6)


def test_frechet_distance_matches_scipy_matrix_square_root():
    """The formula as the FID reference code writes it, with scipy's sqrtm, on correlated features."""
    import numpy as np
    from scipy import linalg

    g = torch.Generator().manual_seed(4)
    a = torch.randn(400, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g) + 0.5
    an, bn = a.double().numpy(), b.double().numpy()
    s_a, s_b = np.cov(an, rowvar=False), np.cov(bn, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    want = ((an.mean(0) - bn.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError, match="two samples"):
        frechet_distance(torch.randn(1, 3), torch.randn(10, 3))


def test_judge_config_rejects_unknown_dataset():
    with pytest.raises(ValueError, match="digits"):
        judge_config("cifar")


@pytest.fixture
def digits_judge():
    # Function-scoped so that conftest.py has already pointed AIGC_CACHE at the
    # session's temporary cache: the first test trains (~3 s on a CPU), later ones load.
    return get_judge("digits", device="cpu", progress=False)


def test_digits_judge_is_accurate_and_scores_real_digits(digits_judge):
    from aigc_helpers.data import load_digits
    from aigc_helpers.vision import accuracy

    test = load_digits("test")
    assert digits_judge.classes == [str(i) for i in range(10)]
    assert len(digits_judge.train_loss) == judge_config("digits").steps
    assert digits_judge.train_loss[-1] < digits_judge.train_loss[0] / 5
    acc = accuracy(digits_judge.model, test.x, test.y)
    assert acc >= 0.95
    assert acc == pytest.approx(digits_judge.test_accuracy)
    s = digits_judge.score(test.x, test.y)
    assert set(s) == {"confidence", "coverage", "class_counts", "accuracy"}
    assert s["accuracy"] == pytest.approx(acc)
    assert s["coverage"] == 1.0 and sum(s["class_counts"]) == len(test)
    assert 0.9 < s["confidence"] <= 1.0
    assert torch.equal(digits_judge.predict(test.x[:50]), digits_judge.probs(test.x[:50]).argmax(-1))


def test_digits_judge_tells_noise_from_digits(digits_judge):
    from aigc_helpers.data import load_digits

    test = load_digits("test")
    noise = torch.rand(len(test), 1, 8, 8, generator=torch.Generator().manual_seed(0))
    real, fake = digits_judge.score(test.x), digits_judge.score(noise)
    assert "accuracy" not in real
    assert real["confidence"] > fake["confidence"]
    floor = digits_judge.fid_floor()            # 224 vs 224 real test digits
    assert floor < digits_judge.fid(noise, test.x) / 5
    # score(..., reference=features) adds the FID from the same pass of the network
    both = digits_judge.score(noise, reference=digits_judge.features(test.x))
    assert both["fid"] == pytest.approx(digits_judge.fid(noise, test.x), rel=1e-9)
    assert both["class_counts"] == fake["class_counts"] and both["coverage"] == fake["coverage"]
    assert both["confidence"] == pytest.approx(fake["confidence"], rel=1e-6)
    # images of another size are resized (bilinear, antialiased) to the judge's 8x8
    big = torch.nn.functional.interpolate(test.x, size=(16, 16), mode="nearest")   # (449, 1, 16, 16)
    small = torch.nn.functional.interpolate(big, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(digits_judge.probs(big), digits_judge.probs(small.clamp(0, 1)), atol=1e-5)
    assert (digits_judge.predict(big) == test.y).float().mean() > 0.8     # measured: 0.95
    with pytest.raises(ValueError, match="images"):
        digits_judge.probs(torch.rand(4, 3, 8, 8))
    with pytest.raises(ValueError, match="2n"):
        digits_judge.fid_floor(n=1000)


def test_coverage_counts_the_classes_that_get_a_fair_share(digits_judge):
    """A set of only 3s covers 1 class in 10, 3s and 7s cover 2; a class needs fair_share * N / K predictions."""
    from aigc_helpers.data import load_digits

    test = load_digits("test")
    threes = test.x[test.y == 3]
    assert digits_judge.score(threes)["coverage"] == pytest.approx(0.1)
    assert digits_judge.score(torch.cat([threes, test.x[test.y == 7]]))["coverage"] == pytest.approx(0.2)
    s = digits_judge.score(test.x, fair_share=1.1)                  # a class needs >= 1.1 * 449 / 10 = 49.4
    want = sum(c >= 1.1 * len(test) / 10 for c in s["class_counts"]) / 10
    assert 0 < want < 1 and s["coverage"] == pytest.approx(want)


def test_judge_cache_returns_the_same_weights(digits_judge, monkeypatch):
    import aigc_helpers.metrics as metrics

    def no_training(*args, **kwargs):
        raise AssertionError("the second call must load the judge from the cache, not train it")

    monkeypatch.setattr(metrics, "train", no_training)
    again = get_judge("digits", device="cpu", progress=False)
    assert again.model is not digits_judge.model
    for (k, v), (k2, v2) in zip(digits_judge.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert again.train_loss == digits_judge.train_loss
    assert again.test_accuracy == digits_judge.test_accuracy
