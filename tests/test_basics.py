"""Tests of aigc_helpers.basics: logistic regression, the MLP and the Gaussian generative classifier."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aigc_helpers.basics import GaussianClassConditional, LogisticRegression, MLP, MLPConfig
from aigc_helpers.data import toy_2d
from aigc_helpers.train import train

torch.set_num_threads(1)   # tiny models: thread coordination costs more than the arithmetic


def _truth() -> GaussianClassConditional:
    """Two strongly correlated Gaussians with unequal priors: a known 'true' distribution."""
    means = [[-1.0, 0.0], [1.5, 1.0]]
    covs = [[[1.0, 0.8], [0.8, 1.0]], [[0.5, -0.3], [-0.3, 0.8]]]
    return GaussianClassConditional.from_params(means, covs, [0.3, 0.7])


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


# --------------------------------------------------------------------------- the two networks


def test_logistic_regression_two_classes_is_sigmoid_of_logit_difference():
    torch.manual_seed(0)
    model = LogisticRegression(3, 2)
    x = torch.randn(50, 3)
    w = model.linear.weight[1] - model.linear.weight[0]          # (3,)
    b = model.linear.bias[1] - model.linear.bias[0]
    expected = torch.sigmoid(x @ w + b)                          # (50,)
    torch.testing.assert_close(model.predict_proba(x)[:, 1], expected.detach())
    assert model(x).shape == (50, 2)


def test_mlp_layers_and_shapes():
    model = MLP(MLPConfig(in_features=3, hidden=(8, 5), n_classes=4, activation="tanh"))
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 8), (8, 5), (5, 4)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.net) == 2
    x = torch.randn(7, 3)
    proba = model.predict_proba(x)
    assert proba.shape == (7, 4)
    torch.testing.assert_close(proba.sum(1), torch.ones(7))
    assert torch.equal(model.predict(x), proba.argmax(1))


def test_mlp_matches_hand_written_forward():
    torch.manual_seed(1)
    model = MLP(MLPConfig(hidden=(6,)))
    x = torch.randn(10, 2)
    l1, l2 = model.net[0], model.net[2]
    by_hand = torch.relu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias   # (10, 2)
    torch.testing.assert_close(model(x), by_hand)


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(MLPConfig(hidden=()))
    assert len(model.net) == 1 and isinstance(model.net[0], torch.nn.Linear)


def test_mlp_beats_logistic_regression_on_moons():
    g = torch.Generator().manual_seed(0)
    x, y = toy_2d("moons", 1200, noise=0.15, generator=g)
    xtr, ytr, xte, yte = x[:800], y[:800], x[800:], y[800:]

    def batches():
        i = torch.randint(len(xtr), (128,), generator=g)
        return xtr[i], ytr[i]

    accs = {}
    for name, model in [("lr", LogisticRegression()), ("mlp", MLP(MLPConfig(hidden=(32, 32))))]:
        torch.manual_seed(0)
        train(model, batches, 300, lr=1e-2, loss_fn=_loss, device="cpu", progress=False)
        accs[name] = (model.predict(xte) == yte).float().mean().item()
    assert 0.80 < accs["lr"] < 0.92          # a straight line cannot separate the moons
    assert accs["mlp"] > 0.96
    assert accs["mlp"] > accs["lr"] + 0.06


def test_logistic_regression_agrees_with_sklearn():
    from sklearn.linear_model import LogisticRegression as SkLogReg

    g = torch.Generator().manual_seed(3)
    x, y = toy_2d("moons", 600, noise=0.2, generator=g)
    model = LogisticRegression()
    train(model, lambda: (x, y), 200, lr=0.1, loss_fn=_loss, device="cpu",
          progress=False, grad_clip=None)
    sk = SkLogReg(C=1e6).fit(x.numpy(), y.numpy())   # (almost) unregularised, like ours
    agree = (model.predict(x).numpy() == sk.predict(x.numpy())).mean()
    assert agree > 0.99
    p_ours = model.predict_proba(x)[:, 1].numpy()
    p_sk = sk.predict_proba(x.numpy())[:, 1]
    assert np.abs(p_ours - p_sk).max() < 0.01   # measured: 7e-4


@pytest.mark.parametrize("bad, match", [
    (torch.randn(5), r"shape \(N, D\)"),
    (torch.randn(5, 3), "expects 2 features"),
    (torch.randn(0, 2), "empty"),
    (torch.ones(4, 2, dtype=torch.long), "floating-point"),
    (torch.tensor([[0.0, float("nan")]]), "NaN"),
    (np.zeros((3, 2)), "torch.Tensor"),
])
def test_networks_reject_bad_input(bad, match):
    for model in (LogisticRegression(), MLP()):
        with pytest.raises(ValueError, match=match):
            model(bad)


def test_networks_reject_bad_config():
    with pytest.raises(ValueError, match="n_classes"):
        LogisticRegression(2, 1)
    with pytest.raises(ValueError, match="in_features"):
        LogisticRegression(0)
    with pytest.raises(ValueError, match="hidden sizes"):
        MLP(MLPConfig(hidden=(4, 0)))
    with pytest.raises(ValueError, match="activation"):
        MLP(MLPConfig(activation="sigmoidish"))


# --------------------------------------------------------------------------- the Gaussian model


def test_fit_is_maximum_likelihood_and_matches_sklearn_qda():
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    x, y = _truth().sample(400, generator=torch.Generator().manual_seed(0))
    model = GaussianClassConditional(reg=0.0).fit(x, y)
    qda = QuadraticDiscriminantAnalysis(store_covariance=True).fit(x.numpy(), y.numpy())
    counts = torch.bincount(y, minlength=2).double()
    np.testing.assert_allclose(model.priors.numpy(), (counts / len(y)).numpy())   # pi_k = N_k / N
    np.testing.assert_allclose(model.priors.numpy(), qda.priors_, atol=1e-12)
    np.testing.assert_allclose(model.means.numpy(), qda.means_, atol=1e-6)
    assert abs(model.priors[1].item() - 0.7) < 0.1                               # the truth's unequal priors
    for k in range(2):   # the ML estimate divides by N_k (numpy's bias=True), not N_k - 1
        np.testing.assert_allclose(model.covs[k].numpy(), np.cov(x[y == k].numpy().T, bias=True), atol=1e-6)
    # with sklearn's covariances plugged in, Bayes' rule must reproduce its probabilities exactly
    same = GaussianClassConditional.from_params(qda.means_, np.stack(qda.covariance_), qda.priors_)
    np.testing.assert_allclose(same.predict_proba(x).numpy(), qda.predict_proba(x.numpy()), atol=1e-5)
    assert (model.predict(x).numpy() == qda.predict(x.numpy())).mean() > 0.99


def test_log_prob_matches_torch_distributions():
    model = _truth()
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(1)) * 2
    y = torch.randint(0, 2, (30,), generator=torch.Generator().manual_seed(2))
    mvn = torch.distributions.MultivariateNormal(model.means, model.covs)
    joint = mvn.log_prob(x.double()[:, None, :]) + model.priors.log()   # (30, 2)
    torch.testing.assert_close(model.log_joint(x), joint)
    torch.testing.assert_close(model.log_prob(x), torch.logsumexp(joint, 1).float())
    torch.testing.assert_close(model.log_prob(x, y), joint.gather(1, y[:, None])[:, 0].float())


def test_one_dimensional_example_by_hand():
    # class 0 at {0, 2}, class 1 at {4, 6}: means 1 and 5, variance 1, priors 1/2 -> boundary at 3
    x = torch.tensor([[0.0], [2.0], [4.0], [6.0]])
    y = torch.tensor([0, 0, 1, 1])
    model = GaussianClassConditional(reg=0.0).fit(x, y)
    torch.testing.assert_close(model.means.flatten(), torch.tensor([1.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(model.covs.flatten(), torch.tensor([1.0, 1.0], dtype=torch.float64))
    p = model.predict_proba(torch.tensor([[3.0], [4.0]]))[:, 1]
    # at x = 4: p(y=1|x) = 1 / (1 + exp(-((4-1)^2 - (4-5)^2) / 2)) = sigmoid(4)
    torch.testing.assert_close(p, torch.tensor([0.5, 1 / (1 + math.exp(-4))]))


def test_bayes_classifier_is_near_optimal_on_gaussian_data():
    truth = _truth()
    g = torch.Generator().manual_seed(4)
    xtr, ytr = truth.sample(5000, generator=g)   # class 0: ~1500 points, so covariance errors ~0.04
    xte, yte = truth.sample(4000, generator=g)
    model = GaussianClassConditional().fit(xtr, ytr)
    acc = (model.predict(xte) == yte).float().mean().item()
    bayes = (truth.predict(xte) == yte).float().mean().item()   # the best any classifier can do
    assert acc > 0.9
    assert acc > bayes - 0.01
    assert torch.allclose(model.means, truth.means, atol=0.15)
    assert torch.allclose(model.covs, truth.covs, atol=0.15)


def test_samples_reproduce_the_fitted_distribution():
    model = _truth()
    xs, ys = model.sample(40_000, generator=torch.Generator().manual_seed(5))
    assert xs.shape == (40_000, 2) and xs.dtype == torch.float32 and ys.dtype == torch.long
    assert abs((ys == 1).float().mean().item() - 0.7) < 0.01
    for k in range(2):
        pts = xs[ys == k].double()
        assert torch.allclose(pts.mean(0), model.means[k], atol=0.03)
        # a transposed Cholesky factor would get the correlation wrong by ~0.3 here
        assert torch.allclose(torch.cov(pts.T), model.covs[k], atol=0.04)


def test_sample_labels_and_generator():
    model = _truth()
    a = model.sample(50, generator=torch.Generator().manual_seed(7))
    b = model.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    _, y = model.sample(20, labels=1)
    assert torch.equal(y, torch.ones(20, dtype=torch.long))
    wanted = torch.tensor([0, 1, 1, 0])
    _, y = model.sample(4, labels=wanted)
    assert torch.equal(y, wanted)


def test_gaussian_model_rejects_bad_input():
    model = _truth()
    with pytest.raises(ValueError, match="fit"):
        GaussianClassConditional().predict(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="reg"):
        GaussianClassConditional(reg=-1.0)
    with pytest.raises(ValueError, match="expects 2 features"):
        model.predict(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="empty"):
        model.log_prob(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="positive int"):
        model.sample(0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        model.sample(3, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="1-D tensor of 3"):
        model.sample(3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="fewer than 2 points"):
        GaussianClassConditional().fit(torch.randn(5, 2), torch.tensor([0, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match="one label per point"):
        GaussianClassConditional().fit(torch.randn(5, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer class ids"):
        GaussianClassConditional().fit(torch.randn(4, 2), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        GaussianClassConditional().fit(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), n_classes=2).sample(
            2, labels=torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="not positive definite"):
        GaussianClassConditional(reg=0.0).fit(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 0.0], [6.0, 1.0]]),
                                              torch.tensor([0, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match="priors"):
        GaussianClassConditional.from_params([[0.0], [1.0]], [[[1.0]], [[1.0]]], [0.5, 0.6])
    with pytest.raises(ValueError, match="symmetric"):
        GaussianClassConditional.from_params([[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]])
