"""SketchedLinear (arXiv:2201.13195): exact forward and input gradient, an unbiased weight gradient
whose variance is the closed form, and a saved tensor that is the sketch S^T X."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.blocks.sketched_linear import (SketchedLinear, SketchedLinearFunction, draw_sketch, sketch_linears,
                                             sketch_rows)
from layerlab.errors import ConfigError, ShapeError
from layerlab.train.footprint import saved_activation_bytes

F64 = torch.float64


def _layer(ratio: float = 0.25, sketch: str = "gaussian", seed: int = 0, n_in: int = 4, n_out: int = 3) -> SketchedLinear:
    torch.manual_seed(0)
    return SketchedLinear(n_in, n_out, sketch_ratio=ratio, sketch=sketch, seed=seed, dtype=F64)


def _weight_grads(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, draws: int) -> torch.Tensor:
    out = []
    for _ in range(draws):
        layer.zero_grad()
        layer(x).backward(g)
        out.append(layer.weight.grad.clone())
    return torch.stack(out)


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)], ids=["1d", "2d", "3d"])
def test_forward_and_input_gradient_are_exact(lead):
    layer = _layer(ratio=0.5)
    x = torch.randn(*lead, 4, dtype=F64, requires_grad=True)
    g = torch.randn(*lead, 3, dtype=F64)
    y = layer(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = layer.reference(ref_x)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    y.backward(g)
    grad_w, grad_b = layer.weight.grad.clone(), layer.bias.grad.clone()
    layer.zero_grad()
    ref.backward(g)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_b, layer.bias.grad, rtol=1e-12, atol=1e-12)
    assert grad_w.shape == layer.weight.shape
    if math.prod(lead) > 1:  # one row: S is 1 x 1 and the estimate is a random multiple of the exact one
        assert not torch.allclose(grad_w, layer.weight.grad)


@pytest.mark.parametrize("sketch", ["gaussian", "rademacher"])
def test_weight_gradient_is_unbiased_with_the_closed_form_variance(sketch):
    """Mean over 3000 draws within 4 standard errors of G^T X (every entry); the sample variance within
    15% of (|g_i|^2 |x_j|^2 + (g_i.x_j)^2 - [Rademacher] 2 sum_m g_mi^2 x_mj^2) / k."""
    layer = _layer(ratio=0.25, sketch=sketch)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, dtype=F64, generator=gen)
    g = torch.randn(16, 3, dtype=F64, generator=gen)
    est = _weight_grads(layer, x, g, 3000)
    exact = g.T @ x
    k = sketch_rows(16, 0.25)
    z = (est.mean(0) - exact) / (est.std(0) / math.sqrt(len(est)))
    assert z.abs().max() < 4, z
    var = (g.pow(2).sum(0)[:, None] * x.pow(2).sum(0)[None, :] + exact**2)
    if sketch == "rademacher":
        var = var - 2 * (g.pow(2).T @ x.pow(2))
    var = var / k
    torch.testing.assert_close(est.var(0), var, rtol=0.15, atol=0)


def test_the_unbiasedness_check_detects_a_biased_sketch():
    """The same 4-standard-error check fails for S without the 1/sqrt(k) scale (E[S S^T] = k I)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, dtype=F64, generator=gen)
    g = torch.randn(16, 3, dtype=F64, generator=gen)
    k, sgen = 4, torch.Generator().manual_seed(2)
    est = torch.stack([(s.T @ g).T @ (s.T @ x) for s in
                       (draw_sketch(16, k, "gaussian", sgen, dtype=F64) * math.sqrt(k) for _ in range(3000))])
    z = (est.mean(0) - g.T @ x) / (est.std(0) / math.sqrt(len(est)))
    assert z.abs().max() > 4


def test_the_saved_tensor_is_the_sketch():
    """Bytes autograd keeps (parameters excluded): B x in for nn.Linear, ceil(rho B) x in when sketched."""
    x = torch.randn(40, 6, dtype=torch.float32, requires_grad=True)
    for ratio in (0.1, 0.5, 1.0):
        torch.manual_seed(0)
        layer = SketchedLinear(6, 5, sketch_ratio=ratio)
        params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
        _, sketched = saved_activation_bytes(lambda: layer(x), exclude=params)
        _, exact = saved_activation_bytes(lambda: layer.reference(x), exclude=params)
        assert exact == 40 * 6 * 4
        assert sketched == sketch_rows(40, ratio) * 6 * 4
    layer.eval()  # no sketch outside training: a plain Linear
    _, plain = saved_activation_bytes(lambda: layer(x), exclude={p.untyped_storage().data_ptr() for p in layer.parameters()})
    assert plain == 40 * 6 * 4 and int(layer.draws) == 1


def test_sketches_are_seeded_and_resume_from_the_draw_counter():
    x = torch.randn(12, 4, dtype=F64)
    g = torch.randn(12, 3, dtype=F64)
    a, b = _layer(seed=3), _layer(seed=3)
    ga = _weight_grads(a, x, g, 3)
    assert torch.equal(ga, _weight_grads(b, x, g, 3))
    assert not torch.equal(ga, _weight_grads(_layer(seed=4), x, g, 3))
    assert not torch.equal(ga[0], ga[1])  # a fresh sketch at every step
    c = _layer(seed=3)
    c.load_state_dict(a.state_dict())  # draws = 3: continues where a is
    assert torch.equal(_weight_grads(a, x, g, 2), _weight_grads(c, x, g, 2))
    assert set(a.state_dict()) == {"weight", "bias", "draws"}


def test_functional_form_without_bias_and_frozen_weight():
    x = torch.randn(7, 4, dtype=F64, requires_grad=True)
    w = torch.randn(3, 4, dtype=F64)  # frozen: nothing is sketched, the input gradient is exact
    y = SketchedLinearFunction.apply(x, w, None, 0.5, "gaussian", 0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(7, 3, dtype=F64) @ w, rtol=1e-12, atol=1e-12)


def test_sketch_linears_copies_and_replaces_every_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    sk = sketch_linears(model, sketch_ratio=0.5, seed=7)
    assert all(type(m) is nn.Linear for m in model if isinstance(m, nn.Linear))
    layers = [m for m in sk if isinstance(m, nn.Linear)]
    assert [type(m) for m in layers] == [SketchedLinear, SketchedLinear] and [m.seed for m in layers] == [7, 8]
    x = torch.randn(5, 4)
    torch.testing.assert_close(sk(x), model(x), rtol=0, atol=0)


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="sketch_ratio"):
        SketchedLinear(3, 2, sketch_ratio=0.0)
    with pytest.raises(ConfigError, match="sketch_ratio"):
        SketchedLinear(3, 2, sketch_ratio=1.5)
    with pytest.raises(ConfigError, match="rademacher"):
        SketchedLinear(3, 2, sketch="dct")
    with pytest.raises(ShapeError, match="in_features = 3"):
        SketchedLinear(3, 2)(torch.randn(4, 5))
