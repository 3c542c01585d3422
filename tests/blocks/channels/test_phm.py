"""PHM: H = sum_i A_i ⊗ S_i — parameter count, fast form vs explicit Kronecker sum, n = 1 is
dense, init statistics, gradients, shapes, dtypes, state_dict, configuration errors."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.phm import PHMLinear, PHMMLP
from layerlab.errors import ConfigError
from layerlab.registry import get



def kron_sum(A, S):
    """The paper's H = sum_i kron(A_i, S_i), written with torch.kron."""
    return sum(torch.kron(A[i], S[i]) for i in range(A.shape[0]))


@pytest.mark.parametrize("in_f,out_f,n,bias", [(8, 12, 4, True), (12, 8, 2, False), (256, 256, 4, True), (64, 32, 8, True)])
def test_parameter_count_formula(in_f, out_f, n, bias):
    layer = PHMLinear(in_f, out_f, n=n, bias=bias)
    count = sum(p.numel() for p in layer.parameters())
    assert count == n**3 + out_f * in_f // n + (out_f if bias else 0)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_parameter_ratio_is_about_one_over_n(n):
    """PHM / dense = 1/n + n^3/(in out): at in = out = 1024 within 0.5% of 1/n for n <= 8."""
    count = sum(p.numel() for p in PHMLinear(1024, 1024, n=n, bias=False).parameters())
    assert abs(count / (1024 * 1024) * n - 1) < 0.005
    block = PHMMLP(64, n=n, bias=False)  # hidden 256
    dense = layerlab.build("channel", "mlp", 64, bias=False)
    n_phm, n_dense = (sum(p.numel() for p in m.parameters()) for m in (block, dense))
    assert n_phm == 2 * n**3 + n_dense // n


@pytest.mark.parametrize("in_f,out_f,n", [(8, 12, 4), (12, 8, 2), (6, 6, 3), (16, 4, 4)])
@pytest.mark.parametrize("mode", ["factored", "kron", "auto"])
def test_forms_equal_explicit_kronecker_sum(in_f, out_f, n, mode):
    torch.manual_seed(0)
    layer = PHMLinear(in_f, out_f, n=n, dtype=torch.float64)
    with torch.no_grad():
        layer.A.normal_()  # generic A, not the unit-norm init
    H = kron_sum(layer.A.detach(), layer.S.detach())
    torch.testing.assert_close(layer.weight().detach(), H, rtol=0, atol=1e-14)
    for rows in (1, 7):
        x = torch.randn(rows, in_f, dtype=torch.float64)
        torch.testing.assert_close(layer(x, mode=mode), F.linear(x, H, layer.bias), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_f,out_f", [(8, 12), (12, 8)])
def test_factored_and_kron_gradients_agree(in_f, out_f):
    torch.manual_seed(1)
    layer = PHMLinear(in_f, out_f, n=4, dtype=torch.float64)
    x = torch.randn(5, in_f, dtype=torch.float64, requires_grad=True)
    r = torch.randn(5, out_f, dtype=torch.float64)
    grads = {}
    for mode in ("factored", "kron"):
        loss = (layer(x, mode=mode) * r).sum()
        grads[mode] = torch.autograd.grad(loss, [x, *layer.parameters()])
    for a, b in zip(grads["factored"], grads["kron"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_n1_is_a_dense_layer():
    torch.manual_seed(2)
    layer = PHMLinear(5, 7, n=1, dtype=torch.float64)
    assert layer.A.shape == (1, 1, 1) and layer.S.shape == (1, 7, 5)
    assert layer.A.abs().item() == pytest.approx(1.0, abs=1e-15)  # a unit vector in R^1
    W = torch.randn(7, 5, dtype=torch.float64)
    with torch.no_grad():  # any dense weight is reachable: A = 1, S = W
        layer.A.fill_(1.0)
        layer.S.copy_(W.unsqueeze(0))
    x = torch.randn(4, 5, dtype=torch.float64)
    for mode in ("factored", "kron"):
        torch.testing.assert_close(layer(x, mode=mode), F.linear(x, W, layer.bias), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_init_effective_weight_std_matches_dense_fan_in(n):
    """std(H) = 1/sqrt(3 in) as nn.Linear's U(-1/sqrt(in), 1/sqrt(in)); within 3% (>= 2^17 entries)."""
    torch.manual_seed(3)
    layer = PHMLinear(256, 512, n=n)
    H = layer.weight().detach()
    assert abs(H.std().item() * (3 * 256) ** 0.5 - 1) < 0.03
    assert abs(H.mean().item()) < 0.01 * 256**-0.5
    torch.testing.assert_close(layer.A.detach().norm(dim=0), torch.ones(n, n), rtol=1e-6, atol=1e-6)
    # the variance is preserved the way a dense layer's is: Var((H x)_j) = in * Var(H) = 1/3 for x ~ N(0, I)
    y = layer(torch.randn(256, 256)) - layer.bias.detach()
    assert abs(y.var().item() * 3 - 1) < 0.1


def test_gradcheck_layer_and_block():
    torch.manual_seed(4)
    layer = PHMLinear(4, 6, n=2, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    for mode in ("factored", "kron"):
        assert torch.autograd.gradcheck(lambda x, A, S, b: torch.func.functional_call(
            layer, {"A": A, "S": S, "bias": b}, (x,), {"mode": mode}),
            (x, layer.A.detach().requires_grad_(), layer.S.detach().requires_grad_(),
             layer.bias.detach().requires_grad_()))
    block = layerlab.build("channel", "phm", 4, n=2, hidden=6, dtype=torch.float64)
    for p in block.parameters():
        torch.nn.init.normal_(p)  # O(1) weights: exercise GELU's nonlinear part
    assert torch.autograd.gradcheck(block, (x,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_preserved_in_both_forms(dtype):
    block = layerlab.build("channel", "phm", 8, dtype=dtype)
    assert all(p.dtype == dtype for p in block.parameters())
    for mode in ("factored", "kron"):
        assert block(torch.randn(3, 8, dtype=dtype), mode=mode).dtype == dtype


def test_widths_and_configuration_errors():
    assert get("channel", "phm").width_multiple({}) == 4
    assert get("channel", "phm").width_multiple({"n": 8}) == 8
    assert PHMMLP(8, n=4).hidden == 32
    assert PHMMLP(8, n=4, expansion=2.6).hidden == 24  # round(20.8) = 21 -> next multiple of 4
    assert PHMMLP(8, n=4, hidden=12).hidden == 12
    with pytest.raises(ConfigError, match=r"d_model = 6 is not divisible by n = 4.*multiple of n"):
        layerlab.build("channel", "phm", 6, n=4)
    with pytest.raises(ConfigError, match="hidden = 10 must be a multiple of n = 4"):
        layerlab.build("channel", "phm", 8, n=4, hidden=10)
    with pytest.raises(ConfigError, match="n"):
        layerlab.build("channel", "phm", 8, n=0)
    with pytest.raises(ConfigError, match="multiple of n"):
        PHMLinear(6, 8, n=4)
    with pytest.raises(ConfigError, match="mode"):
        PHMLinear(8, 8, n=4)(torch.randn(2, 8), mode="fast")
