import math

import pytest
import torch

from aigc_helpers.mathcheck import (cross_entropy, cross_entropy_grad, log_softmax, logsumexp, normal_kl,
                                    numerical_grad, numerical_jacobian, relative_error, softmax, softmax_jacobian)


def test_softmax_family_matches_torch_and_survives_large_logits():
    torch.manual_seed(0)
    z = torch.randn(4, 7, dtype=torch.float64) * 5
    assert torch.allclose(softmax(z), torch.softmax(z, -1), atol=1e-12)
    assert torch.allclose(log_softmax(z), torch.log_softmax(z, -1), atol=1e-12)
    assert torch.allclose(logsumexp(z), torch.logsumexp(z, -1), atol=1e-12)
    assert torch.allclose(softmax(z, dim=0), torch.softmax(z, 0), atol=1e-12)
    big = torch.tensor([1000.0, 999.0, -1000.0])
    assert torch.isfinite(softmax(big)).all() and torch.isfinite(log_softmax(big)).all()
    assert logsumexp(big).item() == pytest.approx(1000 + math.log(1 + math.exp(-1)), abs=1e-4)
    assert torch.isnan((big.exp() / big.exp().sum())).any()              # the naive formula fails here
    assert logsumexp(torch.tensor([-math.inf, -math.inf])).item() == -math.inf


def test_cross_entropy_and_its_gradient():
    torch.manual_seed(1)
    logits = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, 2, 2, 3])
    loss = cross_entropy(logits, y)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), abs=1e-12)
    loss.backward()
    assert torch.allclose(cross_entropy_grad(logits.detach(), y), logits.grad, atol=1e-12)
    # hand example: logits (2, 1, 0.1), class 0
    z = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64)
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0.1)))
    assert cross_entropy(z, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="expected logits"):
        cross_entropy(z, torch.tensor([0, 1]))


def test_softmax_jacobian_against_autograd_and_finite_differences():
    torch.manual_seed(2)
    z = torch.randn(5, dtype=torch.float64)
    jac = softmax_jacobian(softmax(z))
    auto = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, -1), z)
    assert torch.allclose(jac, auto, atol=1e-12)
    assert relative_error(numerical_jacobian(softmax, z), jac) < 1e-8
    assert torch.allclose(jac.sum(1), torch.zeros(5, dtype=torch.float64), atol=1e-12)   # shifts change nothing
    with pytest.raises(ValueError, match="one probability vector"):
        softmax_jacobian(torch.ones(2, 2))


def test_numerical_derivatives_on_known_functions():
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    g = numerical_grad(lambda v: (v ** 3).sum(), x)
    assert g.dtype == torch.float64 and g.shape == x.shape
    assert torch.allclose(g, 3 * x.double() ** 2, atol=1e-8)
    assert torch.equal(x, torch.tensor([[0.5, -1.0], [2.0, 0.0]]))       # the input is left as it was
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(numerical_jacobian(lambda v: a @ v, torch.ones(3)), a, atol=1e-8)
    assert numerical_jacobian(lambda v: v.sin(), torch.zeros(2)).diagonal().tolist() == pytest.approx([1, 1])
    with pytest.raises(ValueError, match="scalar"):
        numerical_grad(lambda v: v * 2, x)


def test_relative_error():
    b = torch.tensor([2.0, -4.0])
    assert relative_error(b, b) == 0.0
    assert relative_error(b + torch.tensor([0.0, 0.4]), b) == pytest.approx(0.1)


def test_normal_kl_against_torch_distributions_and_monte_carlo():
    torch.manual_seed(3)
    m1, m2 = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    v1, v2 = torch.rand(6, dtype=torch.float64) + 0.1, torch.rand(6, dtype=torch.float64) * 3 + 0.1
    D = torch.distributions.Normal
    expected = torch.distributions.kl_divergence(D(m1, v1.sqrt()), D(m2, v2.sqrt()))
    assert torch.allclose(normal_kl(m1, v1, m2, v2), expected, atol=1e-12)
    assert normal_kl(0.0, 1.0, 0.0, 1.0).item() == 0.0
    assert normal_kl(1.0, 1.0, 0.0, 1.0).item() == pytest.approx(0.5)        # mean shift of 1: 1/2
    assert normal_kl(0.0, 1.0, 0.0, 2.0).item() == pytest.approx(0.5 * (math.log(2) + 0.5 - 1))
    x = D(0.3, 0.7).sample((400_000,)).double()                            # E_p[log p - log q]
    mc = (D(0.3, 0.7).log_prob(x) - D(-0.2, 1.3).log_prob(x)).mean().item()
    assert normal_kl(0.3, 0.49, -0.2, 1.69).item() == pytest.approx(mc, abs=5e-3)
    with pytest.raises(ValueError, match="positive variances"):
        normal_kl(0.0, -1.0, 0.0, 1.0)


def test_numerical_derivatives_accept_a_transposed_input():
    from aigc_helpers.mathcheck import numerical_grad, numerical_jacobian
    x = torch.randn(3, 4, dtype=torch.float64).T                        # not contiguous
    assert torch.allclose(numerical_grad(lambda t: (t ** 2).sum(), x), 2 * x, atol=1e-6)
    assert torch.allclose(numerical_jacobian(lambda t: t ** 2, x).reshape(12, 12).diagonal(),
                          2 * x.reshape(-1), atol=1e-6)
