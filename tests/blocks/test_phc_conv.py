"""Parameterized hypercomplex convolution (PHNNs, arXiv:2110.04176): the filter bank is
sum_i kron(A_i, F_i) kernel entry by kernel entry, the layer equals the dense convolution with
that bank, the factored form equals the reference (outputs and gradients, strides/padding/
dilation, 1-D and 2-D), n = 1 is a dense convolution, n = 4 with Hamilton's rule is the quaternion
convolution, 1/n parameters, the init variance, options."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from layerlab.blocks.phc_conv import PHConv
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


def test_weight_is_the_kronecker_sum_entry_by_entry():
    torch.manual_seed(0)
    conv = PHConv(6, 9, 3, n=3, dtype=F64)
    H = conv.weight()
    for u, v in itertools.product(range(3), range(3)):
        kron = sum(torch.kron(conv.A[i], conv.F[i, :, :, u, v]) for i in range(3))
        torch.testing.assert_close(H[:, :, u, v], kron, rtol=0, atol=1e-15)
    x = torch.randn(2, 6, 7, 5, dtype=F64)
    torch.testing.assert_close(conv(x), F.conv2d(x, H, conv.bias), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("dims,kw", [(2, {}), (2, {"stride": 2, "padding": 1, "dilation": (1, 2)}),
                                     (1, {"padding": 2}), (1, {"stride": 3, "dilation": 2})])
def test_factored_equals_reference_outputs_and_gradients(dims, kw, dtype, tol):
    torch.manual_seed(1)
    conv = PHConv(8, 12, 3, n=4, dims=dims, dtype=dtype, **kw)
    x = torch.randn(3, 8, *([9] * dims), dtype=dtype, requires_grad=True)
    res = []
    for mode in ("kron", "factored"):
        conv.zero_grad()
        x.grad = None
        y = conv(x, mode)
        (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(dtype)).sum().backward()
        res.append([y.detach(), x.grad.clone()] + [p.grad.clone() for p in conv.parameters()])
    for a, b in zip(*res):
        assert ((a - b).norm() / b.norm()).item() <= tol


def test_n1_is_a_dense_convolution():
    conv = PHConv(5, 7, (3, 2), n=1, dtype=F64)
    x = torch.randn(2, 5, 6, 6, dtype=F64)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.A[0, 0, 0] * conv.F[0], conv.bias), rtol=1e-13, atol=1e-13)


def test_hamilton_rule_gives_the_quaternion_convolution():
    """A_1..A_4 = the sign patterns of the Hamilton product: H = [[r,-i,-j,-k],[i,r,-k,j],[j,k,r,-i],[k,-j,i,r]]."""
    conv = PHConv(8, 8, 3, n=4, bias=False, dtype=F64)
    rule = {0: [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)],      # r: block (p, q) and sign
            1: [(0, 1, -1), (1, 0, 1), (2, 3, -1), (3, 2, 1)],    # i
            2: [(0, 2, -1), (1, 3, 1), (2, 0, 1), (3, 1, -1)],    # j
            3: [(0, 3, -1), (1, 2, -1), (2, 1, 1), (3, 0, 1)]}    # k
    with torch.no_grad():
        conv.A.zero_()
        for comp, entries in rule.items():
            for p, q, sign in entries:
                conv.A[comp, p, q] = sign
    r, i, j, k = conv.F
    expect = torch.cat([torch.cat(row, 1) for row in ([r, -i, -j, -k], [i, r, -k, j], [j, k, r, -i], [k, -j, i, r])], 0)
    torch.testing.assert_close(conv.weight(), expect, rtol=0, atol=0)


def test_one_over_n_parameters_and_init_variance():
    for n, (cin, cout, ks) in itertools.product((2, 4, 8), ((64, 128, 3), (32, 32, 5))):
        conv = PHConv(cin, cout, ks, n=n)
        count = sum(p.numel() for p in conv.parameters())
        assert count == n**3 + cout * cin * ks * ks // n + cout
        dense = cout * cin * ks * ks + cout
        assert abs(n * count / dense - 1) < 0.12 + n**4 / dense
    torch.manual_seed(3)
    conv = PHConv(64, 64, 3, n=4, dtype=F64)
    var = conv.weight().var().item()  # each entry: sum_i A_i[p,q]^2 Var(F) = 1/(3 fan_in) given A
    assert var == pytest.approx(1 / (3 * 64 * 9), rel=0.03)


def test_bad_options_and_shapes():
    for kw, match in (({"n": 0}, "n"), ({"dims": 3}, "dims"), ({"kernel_size": (3, 3, 3)}, "kernel_size"),
                      ({"kernel_size": 0}, "kernel_size"), ({"stride": "2"}, "stride")):
        with pytest.raises(ConfigError, match=match):
            PHConv(8, 8, **{"kernel_size": 3, **kw})
    with pytest.raises(ConfigError, match="multiple of n"):
        PHConv(6, 8, 3, n=4)
    with pytest.raises(ShapeError, match="in_channels = 8"):
        PHConv(8, 8, 3)(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ConfigError, match="mode"):
        PHConv(8, 8, 3)(torch.zeros(1, 8, 5, 5), mode="fft")
