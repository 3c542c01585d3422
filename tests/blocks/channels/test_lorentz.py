"""Lorentz layers (Fully Hyperbolic Neural Networks, arXiv:2105.14686): every output stays on the
hyperboloid (<y, y>_L = 1/K to 1e-10), the layer is the paper's equation, exp_o and log_o are
inverse, the tangent-space layer fixes the origin (no boost) while the fully hyperbolic one moves it,
strict options."""
from __future__ import annotations

import math

import pytest
import torch

import layerlab
from layerlab.blocks.channels.lorentz import LorentzChannel, LorentzLinear, expmap0, lift, logmap0, lorentz_inner
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


def perturb(m: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("fully", [True, False], ids=["fully", "tangent"])
@pytest.mark.parametrize("K", [-1.0, -0.3, -2.5])
def test_outputs_stay_on_the_hyperboloid(fully: bool, K: float) -> None:
    torch.manual_seed(0)
    block = LorentzChannel(9, hidden=6, curvature=K, fully=fully, dtype=F64)
    perturb(block, scale=0.2)
    x = torch.randn(4, 5, 9, dtype=F64, generator=torch.Generator().manual_seed(1))
    middle = block.layer1(lift(x[..., 1:], -1 / K))
    y = block(x)
    for point in (middle, y):
        # <y, y>_L sums terms of size y_0^2: its rounding is ~1e-16 y_0^2, so the points are kept moderate
        assert point[..., 0].max() < 100 and (point[..., 0] > 0).all()
        rel = (lorentz_inner(point, point) - 1 / K).abs() / abs(1 / K)
        assert rel.max() <= 1e-10
    assert y.shape == x.shape and middle.shape == (4, 5, 6)
    # the output does depend on the input (not a constant point)
    assert (block(x[:1]) - block(x[1:2])).abs().max() > 1e-3


def test_fully_hyperbolic_layer_is_the_paper_equation() -> None:
    """y = [√(‖φ‖² - 1/K), φ], φ = λ σ(vᵀx + b') (W h(x) + b)/‖W h(x) + b‖, h = ReLU on the second layer."""
    torch.manual_seed(0)
    K = -0.7
    layer = LorentzLinear(5, 4, curvature=K, scale=3.0, activation=True, dtype=F64)
    perturb(layer)
    x = lift(torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(2)), -1 / K)
    W, b = layer.weight.weight, layer.weight.bias
    v, b2 = layer.v.weight[0], layer.v.bias[0]
    lam = layer.log_scale.exp()
    u = torch.relu(x) @ W.T + b
    phi = lam * torch.sigmoid(x @ v + b2)[:, None] * u / u.norm(dim=1, keepdim=True)
    expected = torch.cat([torch.sqrt((phi ** 2).sum(1, keepdim=True) - 1 / K), phi], 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-13, atol=1e-13)
    # the space part's norm is λ σ(vᵀx + b') < λ
    torch.testing.assert_close(layer(x)[:, 1:].norm(dim=1), lam * torch.sigmoid(x @ v + b2), rtol=1e-12, atol=0)


def test_exp_and_log_at_the_origin_are_inverse() -> None:
    c = 1 / 0.4
    v = torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    x = expmap0(v, c)
    assert (lorentz_inner(x, x) + c).abs().max() < 1e-10 * c
    torch.testing.assert_close(logmap0(x, c), v, rtol=1e-12, atol=1e-12)
    # geodesic distance from the origin: d(o, exp_o(v)) = ‖v‖ (arcosh(-<o, x>_L / c) √c)
    o = torch.zeros(1, 4, dtype=F64)
    o[0, 0] = math.sqrt(c)
    dist = math.sqrt(c) * torch.acosh(-lorentz_inner(o, x) / c)
    torch.testing.assert_close(dist, v.norm(dim=1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(expmap0(torch.zeros(1, 3, dtype=F64), c), o)


def test_tangent_layer_fixes_the_origin_and_the_fully_hyperbolic_one_boosts_it() -> None:
    """Section 3.3: exp_o(W log_o(x)) is a rotation-like map that keeps o fixed; the paper's layer is not."""
    torch.manual_seed(0)
    o = torch.zeros(1, 5, dtype=F64)
    o[0, 0] = 1.0
    tangent = LorentzLinear(5, 5, fully=False, bias=False, dtype=F64)
    fully = LorentzLinear(5, 5, fully=True, bias=False, dtype=F64)
    perturb(tangent), perturb(fully)
    torch.testing.assert_close(tangent(o), o, rtol=0, atol=1e-12)
    assert (fully(o) - o).abs().max() > 0.1


def test_registered_and_strict() -> None:
    block = layerlab.build("channel", "lorentz", 8, hidden=4)
    assert isinstance(block, LorentzChannel) and block.hidden == 4
    with pytest.raises(ConfigError, match="curvature K must be finite and < 0"):
        layerlab.build("channel", "lorentz", 8, curvature=1.0)
    with pytest.raises(ConfigError, match=">= 2"):
        layerlab.build("channel", "lorentz", 8, hidden=1)
    with pytest.raises(ConfigError, match="scale"):
        layerlab.build("channel", "lorentz", 8, scale=0.0)
    with pytest.raises(ShapeError, match="D = d_model = 8"):
        block(torch.randn(2, 9))
