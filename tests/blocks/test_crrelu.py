"""CRReLU (arXiv:2405.12954): the paper's formula, ReLU at eps = 0, the shape of the correction,
the gradient in eps, init and options. The block contract runs over every registered activation
in test_activations.py."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.activations_crrelu import CRReLU, crrelu
from layerlab.errors import ConfigError

F64 = torch.float64


def formula(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.where(x > 0, x, torch.zeros_like(x)) + eps * x * torch.exp(-(x**2) / 2)


@pytest.mark.parametrize("eps", [0.01, -0.3, 1.5])
def test_equals_paper_formula(eps):
    x = 4 * torch.randn(2000, dtype=F64, generator=torch.Generator().manual_seed(0))
    act = layerlab.build("activation", "crrelu", 16, eps=eps, dtype=F64)
    torch.testing.assert_close(act(x), formula(x, eps), rtol=1e-12, atol=1e-14)


def test_eps_zero_is_relu_and_far_field_is_relu():
    x = torch.linspace(-8, 8, 1601, dtype=F64)
    assert torch.equal(crrelu(x, 0.0), torch.relu(x))
    far = x.abs() > 7  # the correction decays like x exp(-x^2/2) < 7e-10 beyond |x| = 7
    assert (crrelu(x, 1.0) - torch.relu(x))[far].abs().max() < 7 * math.exp(-24.5)
    assert (crrelu(x, 1.0) - torch.relu(x))[~far].abs().max() > 0.5  # and does act near 0


def test_correction_is_odd_and_peaks_at_one():
    x = torch.linspace(0, 4, 4001, dtype=F64)
    corr = crrelu(x, 1.0) - torch.relu(x)  # x exp(-x^2/2) on x >= 0
    torch.testing.assert_close(crrelu(-x, 1.0) - torch.relu(-x), -corr, rtol=0, atol=1e-15)
    assert x[corr.argmax()].item() == pytest.approx(1.0, abs=1e-3)
    assert corr.max().item() == pytest.approx(math.exp(-0.5), abs=1e-9)


def test_eps_is_learnable_with_the_closed_form_gradient():
    act = CRReLU(dtype=F64)
    assert act.eps.item() == 0.01 and act.eps.requires_grad  # the paper's code's init
    x = torch.randn(50, dtype=F64, generator=torch.Generator().manual_seed(1))
    act(x).sum().backward()
    torch.testing.assert_close(act.eps.grad, (x * torch.exp(-(x**2) / 2)).sum(), rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda x, e: crrelu(x, e), (x[:6].clone().requires_grad_(),
                                                                 torch.tensor(0.4, dtype=F64, requires_grad=True)))


def test_inside_the_mlp_and_bad_options():
    mlp = layerlab.build("channel", "mlp", 8, activation="crrelu", activation_options={"eps": 0.2})
    assert isinstance(mlp.act, CRReLU) and mlp.act.eps.item() == pytest.approx(0.2)
    y = mlp(torch.randn(3, 8))
    assert y.shape == (3, 8) and torch.isfinite(y).all()
    for bad in (float("nan"), "0.1", True):
        with pytest.raises(ConfigError, match="eps"):
            CRReLU(eps=bad)
