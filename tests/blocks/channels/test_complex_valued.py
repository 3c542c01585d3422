"""Complex-valued layers (arXiv:1905.12321): the real-arithmetic form equals the complex-tensor
reference (outputs and gradients), the linear map is C-linear, CReLU and modReLU are their
definitions, a bias-free modReLU network commutes with a global phase rotation, strict options."""
from __future__ import annotations

import cmath

import pytest
import torch

import layerlab
from layerlab.blocks.channels.complex_valued import ComplexLinear, ComplexMLP
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


def perturbed(d: int = 8, seed: int = 0, **kw) -> ComplexMLP:
    torch.manual_seed(seed)
    m = ComplexMLP(d, dtype=F64, **kw)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=F64))
    return m


@pytest.mark.parametrize("activation", ["crelu", "modrelu"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_real_form_equals_complex_reference(activation: str, dtype: torch.dtype) -> None:
    m = perturbed(activation=activation).to(dtype)
    x = torch.randn(3, 4, 8, dtype=dtype, generator=torch.Generator().manual_seed(2)).requires_grad_()
    y, yr = m(x), m(x, mode="reference")
    tol = 1e-10 if dtype == F64 else 1e-4
    assert (y - yr).norm() <= tol * yr.norm()
    ps = [x, *m.parameters()]
    g = torch.autograd.grad(y.square().sum(), ps)
    gr = torch.autograd.grad(yr.square().sum(), ps)
    scale = torch.cat([a.flatten() for a in gr]).norm()
    for a, b in zip(g, gr):
        assert (a - b).norm() <= tol * scale


def test_complex_linear_is_c_linear_and_the_activations_are_their_definitions() -> None:
    torch.manual_seed(0)
    lin = ComplexLinear(3, 2, bias=False, dtype=F64)
    z = torch.randn(5, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    w = torch.complex(lin.weight_re, lin.weight_im)
    torch.testing.assert_close(lin.complex_form(z), z @ w.T)
    torch.testing.assert_close(lin.complex_form(1j * z), 1j * lin.complex_form(z))  # C-linear, not just R-linear
    m = perturbed(activation="modrelu")
    with torch.no_grad():
        m.mod_bias[::2] = -1.2  # some units cut off the small moduli
    z = torch.randn(6, m.hidden, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    out = m._act_complex(z)
    expected = torch.relu(z.abs() + m.mod_bias) * z / z.abs()
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)  # |z| vs √(|z|² + ε²)
    alive = out.abs() > 0
    assert alive.any() and (~alive).any()
    torch.testing.assert_close(torch.angle(out[alive]), torch.angle(z[alive]))  # the phase is kept
    c = perturbed()._act_complex(z)
    torch.testing.assert_close(c, torch.complex(z.real.clamp(min=0), z.imag.clamp(min=0)))


def test_bias_free_modrelu_network_commutes_with_a_global_phase() -> None:
    m = perturbed(activation="modrelu", bias=False)
    x = torch.randn(7, 8, dtype=F64, generator=torch.Generator().manual_seed(4))

    def rotate(t: torch.Tensor, theta: float) -> torch.Tensor:
        z = torch.complex(t[..., :4], t[..., 4:]) * cmath.exp(1j * theta)
        return torch.cat([z.real, z.imag], -1)

    for theta in (0.3, 1.9, -2.4):
        torch.testing.assert_close(m(rotate(x, theta)), rotate(m(x), theta), rtol=1e-12, atol=1e-12)
    crelu = perturbed(activation="crelu", bias=False)
    assert (crelu(rotate(x, 1.9)) - rotate(crelu(x), 1.9)).abs().max() > 1e-3  # CReLU is not phase-equivariant


def test_options_are_strict() -> None:
    assert isinstance(layerlab.build("channel", "complex_mlp", 8, hidden=3), ComplexMLP)
    with pytest.raises(ConfigError, match="must be even"):
        layerlab.build("channel", "complex_mlp", 7)
    with pytest.raises(ConfigError, match="complex activation"):
        layerlab.build("channel", "complex_mlp", 8, activation="zrelu")
    m = layerlab.build("channel", "complex_mlp", 8)
    with pytest.raises(ShapeError, match="D = d_model = 8"):
        m(torch.randn(2, 6))
    with pytest.raises(ConfigError, match="float32 or float64"):
        m.to(torch.bfloat16)(torch.randn(2, 8).bfloat16(), mode="reference")
    with pytest.raises(ConfigError, match="reference"):
        m(torch.randn(2, 8), mode="fast")
