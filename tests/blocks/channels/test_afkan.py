"""AF-KAN (arXiv:2503.06112): the layer against its equation written out edge by edge, the
ReLU-KAN bump's support and peak, per-position min-max normalization (no mixing across rows),
the parameter count, strict options. The channel contract covers the rest."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.afkan import FUNCS, AFKAN, AFKANLayer, combine
from layerlab.errors import ConfigError

F64 = torch.float64


def by_hand(lay: AFKANLayer, x: torch.Tensor) -> torch.Tensor:
    """One position at a time, loops over inputs and bumps."""
    sigma = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu}[lay.activation]
    rows = []
    for row in x:
        b = torch.zeros(lay.in_features, lay.grid_size + lay.spline_order, dtype=F64)
        for i in range(lay.in_features):
            for m in range(b.shape[1]):
                a1, a2 = sigma(row[i] - lay.phase_low[m]), sigma(lay.phase_high[m] - row[i])
                b[i, m] = (a1 * a2) ** 2
        b = (b - b.min()) / (b.max() - b.min())
        score = b @ lay.attn.weight[0] + lay.attn.bias[0]
        a = torch.softmax(score / max(lay.temperature.item(), 1.0), 0)
        z = a * b.sum(1)
        z = (z - z.mean()) / torch.sqrt(z.var(unbiased=False) + lay.norm.eps) * lay.norm.weight + lay.norm.bias
        rows.append(lay.weight @ sigma(z))
    return torch.stack(rows)


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
def test_layer_equals_equation(activation):
    torch.manual_seed(0)
    lay = AFKANLayer(5, 3, activation=activation, dtype=F64)
    with torch.no_grad():
        lay.norm.weight.normal_()
        lay.temperature.fill_(0.5 if activation == "relu" else 3.0)  # exercise the clamp at 1
    x = torch.rand(4, 5, dtype=F64, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.3
    torch.testing.assert_close(lay(x), by_hand(lay, x), rtol=1e-10, atol=1e-12)


def test_relu_quad1_bump_is_relu_kans():
    """(relu(x - l) relu(h - x))^2: zero outside [l, h], peak ((h - l)/2)^4 at the midpoint."""
    x = torch.linspace(-1, 2, 3001, dtype=F64)
    l, h = 0.2, 0.9
    b = combine("quad1", F.relu(x - l), F.relu(h - x))
    assert (b[(x <= l) | (x >= h)] == 0).all() and (b[(x > l) & (x < h)] > 0).all()
    assert b.max().item() == pytest.approx(((h - l) / 2) ** 4, rel=1e-6)
    assert x[b.argmax()].item() == pytest.approx((l + h) / 2, abs=1e-3)


def test_normalization_is_per_position_and_in_unit_range():
    torch.manual_seed(2)
    block = AFKAN(8, hidden=6, dtype=F64)
    x = torch.randn(10, 8, dtype=F64)
    b = block.layer1.bumps(x)
    assert torch.allclose(b.flatten(-2).amin(-1), torch.zeros(10, dtype=F64))
    assert torch.allclose(b.flatten(-2).amax(-1), torch.ones(10, dtype=F64))
    alone = torch.cat([block(x[i:i + 1]) for i in range(10)])
    torch.testing.assert_close(block(x), alone, rtol=1e-12, atol=1e-14)  # no example sees another
    x2 = x.clone()
    x2[5:] = 100 * torch.randn(5, 8, dtype=F64)  # other rows change wildly, the first five do not
    torch.testing.assert_close(block(x2)[:5], block(x)[:5], rtol=1e-12, atol=1e-14)


def test_parameter_count():
    for g, k, n, out in ((5, 3, 7, 4), (3, 1, 10, 2)):
        lay = AFKANLayer(n, out, grid_size=g, spline_order=k)
        assert sum(p.numel() for p in lay.parameters()) == out * n + 2 * (g + k) + (g + k + 1) + 1 + 2 * n
    mlp, afkan = layerlab.build("channel", "mlp", 32), layerlab.build("channel", "af_kan", 32)
    n_mlp, n_af = (sum(p.numel() for p in m.parameters()) for m in (mlp, afkan))
    assert abs(n_af - n_mlp) / n_mlp < 0.05  # the MLP's count at the same widths


def test_every_function_combination_runs_and_bad_options():
    x = torch.randn(3, 8)
    for func in FUNCS:
        assert torch.isfinite(layerlab.build("channel", "af_kan", 8, func=func)(x)).all()
    for kw, match in (({"func": "quartic"}, "func"), ({"activation": "swish7"}, "activation"),
                      ({"grid_size": 0}, "grid_size"), ({"spline_order": -1}, "spline_order"),
                      ({"hidden": 0}, "hidden")):
        with pytest.raises(ConfigError, match=match):
            AFKAN(8, **kw)
    assert math.isfinite(AFKAN(4)(torch.zeros(2, 4)).sum().item())  # the zero input stays finite
