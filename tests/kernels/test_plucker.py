"""The fused mean of normalised Plücker pairs (Causal Grassmann mixing) against the PyTorch form:
values and gradients, degenerate pairs, offsets past the sequence, double backward, the fallback."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from layerlab.kernels.plucker import extension, plucker, plucker_mean_fused, plucker_mean_pairs
from tests.conftest import skip_without_compiler

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.fixture(autouse=True)
def compiled():
    skip_without_compiler("the fused Plücker mean")
    assert extension.serves([torch.zeros(1)])


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L,r,windows", [(1, 2, (1,)), (13, 4, (1, 2, 4, 8, 12, 16)), (40, 7, (3, 1, 5))])
def test_fused_matches_pairs(dtype, L, r, windows):
    z = torch.randn(3, L, r, dtype=dtype, generator=torch.Generator().manual_seed(L))
    outs, grads = [], []
    for form in (plucker_mean_fused, plucker_mean_pairs):
        leaf = z.clone().requires_grad_()
        mean, count = form(leaf, windows, 1e-8)
        weight = torch.randn(mean.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        (mean * weight).sum().backward()
        outs.append((mean.detach(), count))
        grads.append(leaf.grad)
    (fused, c_fused), (pairs, c_pairs) = outs
    assert torch.equal(c_fused, c_pairs)
    if L == 1:  # no offset reaches back: zero encoding, zero gradient
        assert not fused.any() and not grads[0].any()
        return
    assert rel(fused, pairs) <= TOL[dtype] and rel(grads[0], grads[1]) <= TOL[dtype]


def test_each_position_is_the_mean_of_its_unit_pairs():
    z = torch.randn(2, 9, 5, dtype=torch.float64)
    mean, _ = plucker_mean_fused(z, (1, 2), 1e-8)
    t = 6
    units = [plucker(z[:, t], z[:, t - d]) for d in (1, 2)]
    expected = sum(u / u.norm(dim=-1, keepdim=True) for u in units) / 2
    torch.testing.assert_close(mean[:, t], expected, rtol=1e-12, atol=1e-14)
    first = plucker(z[:, 1], z[:, 0])  # position 1: only the offset 1 reaches back
    torch.testing.assert_close(mean[:, 1], first / first.norm(dim=-1, keepdim=True), rtol=1e-12, atol=1e-14)


def test_parallel_pair_contributes_zero():
    z = torch.randn(1, 6, 4, dtype=torch.float64)
    z[:, 4] = 3.0 * z[:, 3]  # the plane of (z_4, z_3) is degenerate: p = 0 (up to rounding), |p| < eps
    mean, _ = plucker_mean_fused(z, (1,), 1e-8)
    assert mean[:, 4].abs().max() < 1e-6


def test_double_backward_and_gradcheck():
    z = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    f = lambda t: plucker_mean_fused(t, (1, 3), 1e-8)[0]  # noqa: E731
    assert gradcheck(f, (z,)) and gradgradcheck(f, (z,))


def test_switched_off_the_pytorch_form_serves(monkeypatch):
    z = torch.randn(2, 11, 5, dtype=torch.float64)
    monkeypatch.setenv("LAYERLAB_NO_EXTENSIONS", "1")
    off, _ = plucker_mean_fused(z, (1, 2), 1e-8)
    pairs, _ = plucker_mean_pairs(z, (1, 2), 1e-8)
    assert torch.equal(off, pairs)
