"""B-cosification (arXiv:2411.00715): conversion exact at B = 1, B-cos layer equation, schedule, dynamic linearity."""
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.models.bcosification import BcosifiedLinear, b_schedule, bcosify, contributions, set_B


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.bias.normal_()  # nonzero biases so that keeping them matters
    return net


@pytest.mark.parametrize("encode", [False, True])
def test_b1_conversion_computes_the_original_function(encode):
    net = _mlp()
    x = torch.rand(64, 12, dtype=torch.float64)
    conv = bcosify(net, B=1.0, keep_bias=True, encode_input=encode)
    assert sum(isinstance(m, BcosifiedLinear) for m in conv.modules()) == 3
    y, yc = net(x), conv(x)
    assert (yc - y).abs().max() / y.abs().max() <= 1e-10
    # the original is untouched and the copy owns its parameters
    with torch.no_grad():
        conv[0].weight.add_(1.0)
    assert torch.equal(net(x), y)


def test_dropping_biases_equals_original_with_zero_biases():
    net = _mlp()
    x = torch.rand(16, 12, dtype=torch.float64)
    conv = bcosify(net, B=1.0)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    assert torch.allclose(conv(x), net(x), rtol=0, atol=1e-12)


def test_layer_equation_against_reference_and_closed_form():
    torch.manual_seed(1)
    lin = nn.Linear(7, 4).double()
    x = torch.randn(9, 7, dtype=torch.float64)
    for B in (1.0, 1.5, 2.0, 3.0):
        layer = BcosifiedLinear(lin, B=B, keep_bias=True)
        assert torch.allclose(layer(x), layer.reference(x), rtol=1e-10, atol=1e-12)
        w = lin.weight
        cos = (x @ w.T) / (x.norm(dim=-1, keepdim=True) * w.norm(dim=-1))
        expect = cos.abs() ** (B - 1) * (x @ w.T) + lin.bias
        assert torch.allclose(layer(x), expect, rtol=1e-10, atol=1e-12)
    # B = 2 and no bias: |f| = |cos|^2 ||x|| ||w|| <= ||x|| ||w||, equality for x aligned with w
    layer = BcosifiedLinear(lin, B=2.0)
    bound = x.norm(dim=-1, keepdim=True) * lin.weight.norm(dim=-1)
    assert (layer(x).abs() <= bound * (1 + 1e-12)).all()
    aligned = layer(lin.weight[:1].detach() * 3.0)[0, 0]
    assert torch.isclose(aligned, 3.0 * lin.weight[0].norm() ** 2, rtol=1e-10)


def test_float32_matches_float64():
    net = _mlp()
    x = torch.rand(32, 12, dtype=torch.float64)
    c64 = bcosify(net, B=2.0, encode_input=True)
    c32 = bcosify(net.float(), B=2.0, encode_input=True)
    y64, y32 = c64(x), c32(x.float()).double()
    assert (y32 - y64).abs().max() / y64.abs().max() <= 1e-4


def test_bias_free_network_is_dynamic_linear_at_b2():
    net = _mlp()
    conv = bcosify(net, B=2.0)
    x = torch.rand(20, 12, dtype=torch.float64) + 0.1
    y = conv(x)
    # positively homogeneous: f(a x) = a f(x)
    assert torch.allclose(conv(3.7 * x), 3.7 * y, rtol=1e-9, atol=1e-12)
    # contributions sum to the logit (Euler); a network with biases would not
    target = y.argmax(-1)
    c = contributions(conv, x, target)
    assert torch.allclose(c.sum(-1), y.gather(-1, target[:, None])[:, 0], rtol=1e-9, atol=1e-10)
    with_bias = bcosify(net, B=2.0, keep_bias=True)
    cb = contributions(with_bias, x, target)
    assert not torch.allclose(cb.sum(-1), with_bias(x).gather(-1, target[:, None])[:, 0], rtol=1e-6, atol=1e-6)


def test_b_grows_the_alignment_pressure():
    net = _mlp()
    x = torch.rand(8, 12, dtype=torch.float64)
    conv = bcosify(net, B=1.0)
    y1 = conv(x)
    set_B(conv, 2.0)
    assert all(m.B == 2.0 for m in conv.modules() if isinstance(m, BcosifiedLinear))
    assert not torch.allclose(conv(x), y1)


def test_schedule():
    assert b_schedule(0, ramp_steps=10) == 1.0
    assert b_schedule(5, ramp_steps=10) == 1.5
    assert b_schedule(10, ramp_steps=10) == 2.0 and b_schedule(99, ramp_steps=10) == 2.0
    assert b_schedule(0, ramp_steps=0, B_end=2.5) == 2.5
    with pytest.raises(ConfigError, match="ramp_steps"):
        b_schedule(1, ramp_steps=-1)


def test_strict_options():
    with pytest.raises(ConfigError, match="B must be"):
        bcosify(_mlp(), B=0.5)
    with pytest.raises(ConfigError, match="no nn.Linear"):
        bcosify(nn.Sequential(nn.ReLU()))
    with pytest.raises(ConfigError, match="bcosify"):
        set_B(_mlp(), 2.0)
    with pytest.raises(ShapeError, match="in_features"):
        bcosify(_mlp())(torch.rand(2, 5, dtype=torch.float64))
