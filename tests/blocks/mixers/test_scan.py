"""The shared linear recurrence h_t = a_t h_{t-1} + b_t: the parallel odd-even scan against the
plain loop (outputs and gradients, real and complex, with and without h0), shape errors."""
import pytest
import torch

from layerlab.blocks.mixers.scan import linear_recurrence_loop, linear_scan
from layerlab.errors import ShapeError

from .contract import rel_err


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("L", [1, 2, 3, 7, 16, 33, 70])
def test_linear_scan_equals_loop_outputs_and_gradients(L, dtype):
    g = torch.Generator().manual_seed(L)
    a = (torch.rand(2, L, 3, 2, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)  # signs of both kinds
    if dtype.is_complex:
        a = a * torch.exp(1j * torch.rand(2, L, 3, 2, generator=g, dtype=torch.float64) * 6.28)
    b = torch.randn(2, L, 3, 2, generator=g, dtype=dtype)
    h0 = torch.randn(2, 3, 2, generator=g, dtype=dtype)
    cot = torch.randn(2, L, 3, 2, generator=g, dtype=dtype)
    for init in (None, h0):
        leaves = [t.clone().requires_grad_(True) for t in (a, b, h0)]
        outs = []
        for fn in (linear_scan, linear_recurrence_loop):
            h = fn(leaves[0], leaves[1], None if init is None else leaves[2])
            grads = torch.autograd.grad((h * cot.conj()).real.sum(), leaves, allow_unused=True)
            outs.append((h.detach(), grads))
        (h_s, g_s), (h_l, g_l) = outs
        assert rel_err(h_s, h_l) <= 1e-12  # float64: both are exact up to rounding
        for x, y, leaf in zip(g_s, g_l, leaves):
            if x is None and y is None:
                continue
            x = torch.zeros_like(leaf) if x is None else x  # L = 1 without h0: a_0 multiplies 0
            y = torch.zeros_like(leaf) if y is None else y
            assert (x - y).abs().max() <= 1e-12 * (1 + y.abs().max())


def test_linear_scan_rejects_mismatched_shapes():
    with pytest.raises(ShapeError, match="one shape"):
        linear_scan(torch.rand(2, 5, 3), torch.rand(2, 5, 4))
    with pytest.raises(ShapeError, match=r"h0 must have shape \(2, 3\)"):
        linear_scan(torch.rand(2, 5, 3), torch.rand(2, 5, 3), torch.rand(2, 4))
