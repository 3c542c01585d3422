"""HyperZ·Z·W (arXiv:2401.17948): the slow network's kernel ignores the input, the operator is
y_t = sum_j (W_j Z_j) Z_{t-j} (by hand), quadratic in Z, the FFT form equals it; options."""
import math

import pytest
import torch

from layerlab.blocks.mixers.hyperzzw import HyperZZW
from layerlab.errors import ConfigError, ShapeError

from .contract import check_forms_agree


def make(**kw):
    return HyperZZW(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), **kw)


def test_operator_by_hand():
    b = make(mixing="none", l_max=16)
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    W = b.hyper_kernel(9, torch.float64).detach()
    y = b(x, "fft")
    for t in range(9):
        want = sum(W[j] * x[:, j] * x[:, t - j] for j in range(t + 1))
        assert torch.allclose(y[:, t], want, rtol=1e-12, atol=1e-12)


def test_slow_network_by_hand():
    """Two sine filters: W_j = U_o ((U_1 sin(w_0 c + p_0) + b_1) * sin(w_1 c + p_1)) + b_o, c = 2j/(l_max-1) - 1."""
    b = make(l_max=10, hidden=3)
    with torch.no_grad():
        for p in (b.b[0], b.b_o):
            p.uniform_(-1, 1)
    W = b.hyper_kernel(5, torch.float64).detach()
    for j in range(5):
        c = 2 * j / 9 - 1
        h = torch.sin(b.omega[0] * c + b.phi[0])
        h = (b.U[0] @ h + b.b[0]) * torch.sin(b.omega[1] * c + b.phi[1])
        assert torch.allclose(W[j], (b.U_o @ h + b.b_o).detach(), rtol=1e-12, atol=1e-14)


def test_kernel_is_slow_and_context_enters_by_product():
    """W depends on coordinates only; the output is homogeneous of degree 2 in the input."""
    b = make(mixing="none")
    x = torch.randn(1, 12, 4, dtype=torch.float64)
    assert torch.equal(b.hyper_kernel(12, torch.float64), b.hyper_kernel(12, torch.float64))
    assert torch.allclose(b(3 * x), 9 * b(x), rtol=1e-12)
    assert torch.allclose(b(-x), b(x), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fft_equals_reference_long(dtype):
    b = HyperZZW(6, l_max=64, dtype=dtype, generator=torch.Generator().manual_seed(1))
    check_forms_agree(b, 2, 64)


def test_length_and_options_checked():
    with pytest.raises(ShapeError, match="l_max"):
        make(l_max=8)(torch.randn(1, 9, 4, dtype=torch.float64))
    for kw, word in [({"hidden": 0}, "hidden"), ({"l_max": 1}, "l_max"), ({"omega0": 0.0}, "omega0"),
                     ({"mixing": "glu"}, "mixing")]:
        with pytest.raises(ConfigError, match=word):
            HyperZZW(4, **kw)
    assert not HyperZZW.recurrent and math.isfinite(make()(torch.randn(1, 5, 4, dtype=torch.float64)).sum().item())
