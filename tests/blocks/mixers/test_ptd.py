"""HiPPO-LegS and perturb-then-diagonalise (Robustifying SSMs, arXiv:2310.01698): the closed form,
backward stability, conditioning, uniform convergence of the transfer function as eps -> 0, and
S4D's init="ptd"."""
import math

import pytest
import torch

from layerlab.blocks.mixers.hippo import diagonal_transfer, hippo_legs, ptd, transfer
from layerlab.blocks.mixers.s4d import S4D
from layerlab.errors import ConfigError

from .contract import check_forms_agree

# the imaginary axis, 0 and 10^-2 .. 10^4
OMEGA = torch.cat([torch.zeros(1), torch.logspace(-2, 4, 600, dtype=torch.float64)])
S = 1j * OMEGA.to(torch.complex128)


def test_hippo_legs_closed_form():
    A, B = hippo_legs(4)
    r = [math.sqrt(2 * n + 1) for n in range(4)]
    for n in range(4):
        assert B[n].item() == pytest.approx(r[n], abs=1e-15)
        for k in range(4):
            want = -r[n] * r[k] if n > k else (-(n + 1) if n == k else 0.0)
            assert A[n, k].item() == pytest.approx(want, abs=1e-14)


@pytest.mark.parametrize("eps", [1e-1, 1e-3])
def test_ptd_is_backward_stable(eps):
    """V diag(L) V^{-1} reproduces A + E to rounding, and ||E||_2 = eps."""
    A, _ = hippo_legs(32)
    lam, V, E = ptd(A, eps, generator=torch.Generator().manual_seed(0))
    assert torch.linalg.matrix_norm(E, ord=2).item() == pytest.approx(eps, rel=1e-10)
    back = (V @ torch.diag(lam) @ torch.linalg.inv(V)).real
    assert (back - (A + E)).abs().max().item() <= 1e-8 * torch.linalg.matrix_norm(A, ord=2).item()
    # each eigenvalue lies in the eps-pseudospectrum of A: sigma_min(lambda I - A) <= eps
    for l in lam:
        smin = torch.linalg.svdvals(l * torch.eye(32, dtype=torch.complex128) - A.to(torch.complex128)).min()
        assert smin.item() <= eps * (1 + 1e-6)


def test_ptd_is_far_better_conditioned_than_exact_diagonalisation():
    A, _ = hippo_legs(32)
    _, V0 = torch.linalg.eig(A)
    _, V, _ = ptd(A, 1e-2, generator=torch.Generator().manual_seed(1))
    assert torch.linalg.cond(V0).item() > 1e15
    assert torch.linalg.cond(V).item() < 1e-8 * torch.linalg.cond(V0).item()


def test_ptd_tries_keeps_best_conditioned():
    A, _ = hippo_legs(16)
    g = torch.Generator().manual_seed(0)  # the same three draws, one at a time
    one = [torch.linalg.cond(ptd(A, 1e-2, generator=g)[1]).item() for _ in range(3)]
    _, V, _ = ptd(A, 1e-2, generator=torch.Generator().manual_seed(0), tries=3)
    assert torch.linalg.cond(V).item() <= min(one) * (1 + 1e-9)


def sup_error(N: int, eps: float, seed: int) -> float:
    A, B = hippo_legs(N)
    C = torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + seed))
    lam, V, _ = ptd(A, eps, generator=torch.Generator().manual_seed(seed))
    b, c = torch.linalg.solve(V, B.to(V.dtype)), C.to(V.dtype) @ V
    return (diagonal_transfer(lam, b, c, S) - transfer(A, B, C, S)).abs().max().item()


def test_transfer_function_converges_uniformly_as_eps_shrinks():
    """sup_omega |G_PTD(i omega) - G_HiPPO(i omega)| is O(eps): it falls with eps, at a bounded rate."""
    errs = {eps: sup_error(32, eps, 0) for eps in (1e-2, 1e-4, 1e-6)}
    assert errs[1e-4] < errs[1e-2] / 20 and errs[1e-6] < errs[1e-4] / 20
    assert max(e / eps for eps, e in errs.items()) < 10.0


def test_transfer_helpers_agree():
    """The dense and diagonal transfer functions agree on a well-conditioned diagonalisable matrix."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(6, 6, dtype=torch.float64, generator=g) - 4 * torch.eye(6, dtype=torch.float64)
    B, C = torch.randn(6, dtype=torch.float64, generator=g), torch.randn(6, dtype=torch.float64, generator=g)
    lam, V = torch.linalg.eig(A)
    dense = transfer(A, B, C, S)
    diag = diagonal_transfer(lam, torch.linalg.solve(V, B.to(V.dtype)), C.to(V.dtype) @ V, S)
    assert ((dense - diag).abs().max() / dense.abs().max()).item() < 1e-10


def test_s4d_ptd_init():
    """Eigenvalues in HiPPO-LegS's eps-pseudospectrum, stable, and the FFT form equals the recurrence."""
    block = S4D(4, d_state=16, init="ptd", ptd_eps=0.1, dtype=torch.float64,
                generator=torch.Generator().manual_seed(0))
    A, _, _ = block.continuous(torch.complex128)
    assert torch.allclose(A[0], A[1])  # one spectrum for every channel
    assert (A.real < 0).all()
    A_H, _ = hippo_legs(8)
    for l in A[0]:
        smin = torch.linalg.svdvals(l * torch.eye(8, dtype=torch.complex128) - A_H.to(torch.complex128)).min()
        assert smin.item() <= 0.1 * (1 + 1e-6)
    assert not torch.allclose(A[0].real, torch.full_like(A[0].real, -0.5))  # not S4D-Lin
    check_forms_agree(block, 2, 7)


def test_s4d_ptd_options_are_checked():
    with pytest.raises(ConfigError, match="ptd_eps"):
        S4D(4, d_state=8, init="ptd", ptd_eps=0.0)
    with pytest.raises(ConfigError, match="smaller ptd_eps"):
        S4D(4, d_state=16, init="ptd", ptd_eps=50.0, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="eps"):
        ptd(hippo_legs(4)[0], -1.0)
