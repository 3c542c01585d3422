"""B-cos: f(x) = |cos(x, ŵ)|^(B-1) ŵᵀx — B = 1 is linear with unit rows, |f_j| <= ||x||, the
dynamic-linear form W(x) x, safety at x = 0, gradients, shapes, dtypes, state_dict, gains."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.bcos import BcosLinear, BcosMLP, bcos_gain
from layerlab.errors import ConfigError

F64 = torch.float64


def unit_rows(w):
    return w / w.norm(dim=-1, keepdim=True)


def test_b1_is_linear_with_unit_norm_rows():
    torch.manual_seed(0)
    layer = BcosLinear(6, 5, B=1, dtype=F64)
    x = torch.randn(20, 6, dtype=F64)
    torch.testing.assert_close(layer(x), F.linear(x, unit_rows(layer.weight.detach())), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("B", [1.5, 2.0, 2.5, 3.0])
def test_equation(B):
    """The paper's form |cos(x, ŵ)|^(B-1) ŵᵀx, written out (no eps: inputs are far from 0)."""
    torch.manual_seed(1)
    layer = BcosLinear(6, 5, B=B, dtype=F64)
    x = torch.randn(20, 6, dtype=F64)
    lin = F.linear(x, unit_rows(layer.weight.detach()))
    cos = lin / x.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(layer(x), cos.abs() ** (B - 1) * lin, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("max_out", [1, 2])
@pytest.mark.parametrize("B", [1.0, 1.25, 2.0, 3.0, 5.0])
def test_outputs_bounded_by_input_norm(B, max_out):
    """|f_j(x)| = |cos|^B ||x|| <= ||x|| for every unit, over 2000 draws at scales 1e-3..1e3;
    the bound is attained (to 1e-12) when x is parallel to a weight row, so it is tight."""
    gen = torch.Generator().manual_seed(2)
    layer = BcosLinear(7, 9, B=B, max_out=max_out, dtype=F64)
    scale = 10.0 ** torch.empty(2000, 1, dtype=F64).uniform_(-3, 3, generator=gen)
    x = torch.randn(2000, 7, dtype=F64, generator=gen) * scale
    y = layer(x)
    assert torch.all(y.abs() <= x.norm(dim=-1, keepdim=True) * (1 + 1e-12))
    w_hat = unit_rows(layer.weight.detach())
    x_aligned = 3.0 * w_hat[::max_out]  # unit j's first row, ||x|| = 3
    y_aligned = layer(x_aligned)
    diag = y_aligned[torch.arange(9), torch.arange(9)]
    torch.testing.assert_close(diag, torch.full_like(diag, 3.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("max_out", [1, 2])
@pytest.mark.parametrize("B", [1.0, 1.5, 2.0, 3.0])
def test_dynamic_linear_form_reproduces_output(B, max_out):
    """f(x) = W(x) x with W(x) = diag(|cos(x, ŵ_j)|^(B-1)) Ŵ: the paper's explanation is exact."""
    torch.manual_seed(3)
    layer = BcosLinear(6, 4, B=B, max_out=max_out, dtype=F64)
    x = torch.randn(2, 3, 6, dtype=F64)
    W = layer.dynamic_weight(x)
    assert W.shape == (2, 3, 4, 6)
    torch.testing.assert_close((W @ x.unsqueeze(-1)).squeeze(-1), layer(x), rtol=1e-12, atol=1e-12)
    if max_out == 1:  # the rows of W(x) are the unit rows scaled by |cos|^(B-1)
        cos = F.linear(x, unit_rows(layer.weight.detach())) / x.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(W, cos.abs().unsqueeze(-1) ** (B - 1) * unit_rows(layer.weight.detach()),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("max_out", [1, 2])
def test_block_is_dynamic_linear(max_out):
    torch.manual_seed(4)
    block = BcosMLP(6, hidden=10, max_out=max_out, dtype=F64)
    x = torch.randn(5, 6, dtype=F64)
    W = block.dynamic_weight(x)
    assert W.shape == (5, 6, 6)
    torch.testing.assert_close((W @ x.unsqueeze(-1)).squeeze(-1), block(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("B", [1.0, 1.5, 2.0, 3.0])
def test_safe_at_zero_input(B):
    torch.manual_seed(5)
    layer = BcosLinear(4, 3, B=B, max_out=2, dtype=F64)
    x = torch.zeros(2, 4, dtype=F64, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, torch.zeros_like(y))
    gx, gw = torch.autograd.grad(y.sum(), (x, layer.weight))
    assert torch.isfinite(gx).all() and torch.isfinite(gw).all()
    block = BcosMLP(4, hidden=6, B=B, dtype=F64)
    yb = block(x)
    (gxb,) = torch.autograd.grad(yb.sum(), x)
    assert torch.isfinite(yb).all() and torch.isfinite(gxb).all()


@pytest.mark.parametrize("B,max_out", [(1.0, 1), (2.0, 1), (2.5, 2), (1.5, 1)])
def test_gradcheck_layer(B, max_out):
    torch.manual_seed(6)
    layer = BcosLinear(4, 3, B=B, max_out=max_out, dtype=F64)
    x = torch.randn(3, 4, dtype=F64) + 0.5  # away from x = 0 (and, a.s., from cos = 0 and MaxOut ties)
    w = layer.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w: torch.func.functional_call(layer, {"weight": w}, (x,)), (x.requires_grad_(), w))


def test_gradcheck_block():
    torch.manual_seed(7)
    block = layerlab.build("channel", "bcos", 3, hidden=5, dtype=F64)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


@pytest.mark.parametrize("B", [1.0, 2.0, 3.0])
def test_gain_preserves_rms_at_random_alignment(B):
    """bcos_gain(d, B) * f(x) has the RMS of x at init (Gaussian-cosine approximation); within 10%."""
    torch.manual_seed(8)
    layer = BcosLinear(256, 512, B=B)
    x = torch.randn(64, 256)
    rms = (bcos_gain(256, B) * layer(x)).pow(2).mean().sqrt().item()
    assert abs(rms - 1) < 0.1
    assert bcos_gain(256, 1.0) == pytest.approx(1.0)
    assert bcos_gain(256, 2.0) == pytest.approx((256 / 3) ** 0.5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_preserved_with_max_out(dtype):
    block = layerlab.build("channel", "bcos", 8, max_out=2, dtype=dtype)
    assert all(p.dtype == dtype for p in block.parameters())
    y = block(torch.randn(3, 8, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_configuration_errors():
    assert BcosMLP(8).hidden == 32 and BcosMLP(8, max_out=2).fc1.weight.shape == (64, 8)
    with pytest.raises(ConfigError, match="B must be a number >= 1"):
        layerlab.build("channel", "bcos", 8, B=0.5)
    with pytest.raises(ConfigError, match="max_out"):
        layerlab.build("channel", "bcos", 8, max_out=0)
    with pytest.raises(ConfigError, match="eps"):
        layerlab.build("channel", "bcos", 8, eps=0.0)
    with pytest.raises(ConfigError, match="unknown option"):
        layerlab.build("channel", "bcos", 8, bias=True)
    assert set(BcosMLP(8).state_dict()) == {"fc1.weight", "fc2.weight"}  # no biases
