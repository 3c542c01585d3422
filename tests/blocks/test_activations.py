"""Activations: the paper's formulas, shapes over (*), dtypes, gradients."""
import math

import pytest
import torch

import layerlab
from layerlab.errors import ConfigError

FORMULAS = {
    "gelu": lambda x: x * 0.5 * (1 + torch.erf(x / math.sqrt(2))),  # x Phi(x)
    "relu": lambda x: torch.maximum(x, torch.zeros_like(x)),  # max(0, x)
    "silu": lambda x: x / (1 + torch.exp(-x)),  # x sigma(x)
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_equals_paper_formula(name):
    torch.manual_seed(0)
    x = 4 * torch.randn(1000, dtype=torch.float64)
    act = layerlab.build("activation", name, 16)
    torch.testing.assert_close(act(x), FORMULAS[name](x), rtol=1e-12, atol=1e-14)


def test_gelu_tanh_approximation():
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    approx = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(layerlab.build("activation", "gelu", 1, approximate="tanh")(x), approx)
    assert (approx - FORMULAS["gelu"](x)).abs().max() > 1e-5  # the two forms do differ
    with pytest.raises(ConfigError):
        layerlab.build("activation", "gelu", 1, approximate="fast")


@pytest.mark.parametrize("lead", [(), (5,), (2, 3, 1, 4)], ids=str)
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_shape_over_leading_dims(name, lead):
    x = torch.randn(*lead, 8)
    assert layerlab.build("activation", name, 8)(x).shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_dtype_preserved(name, dtype):
    assert layerlab.build("activation", name, 8)(torch.randn(3, 8, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_gradcheck(name):
    torch.manual_seed(1)
    x = torch.randn(3, 4, dtype=torch.float64)
    x = (x + 0.1 * torch.sign(x)).requires_grad_(True)  # keep ReLU's kink out of reach
    assert torch.autograd.gradcheck(layerlab.build("activation", name, 4), (x,))


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_state_dict_round_trip(name):
    a, b = layerlab.build("activation", name, 8), layerlab.build("activation", name, 8)
    assert list(a.parameters()) == [] and a.state_dict() == {}
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 8)
    assert torch.equal(a(x), b(x))
