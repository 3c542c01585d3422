"""The PTD measurement: its error is sup |G_PTD - G_H| / sup |G_H| recomputed here with the
first-order identity G~ - G = C (sI - A - E)^{-1} E (sI - A)^{-1} B (exact for the perturbed matrix)."""
import pytest
import torch

from layerlab.blocks.mixers.hippo import hippo_legs, ptd, transfer
from layerlab.claims.measures.ptd import ptd_transfer_uniform_error
from layerlab.errors import ConfigError


def test_error_matches_resolvent_identity():
    N, eps, points = 12, 1e-3, 50
    out = ptd_transfer_uniform_error(0, N=N, eps=eps, points=points)
    g = torch.Generator().manual_seed(0)  # the measurement's draws, in its order
    A, B = hippo_legs(N)
    C = torch.randn(N, dtype=torch.float64, generator=g)
    _, _, E = ptd(A, eps, generator=g)
    omega = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-2, 4, points, dtype=torch.float64)])
    s = 1j * omega.to(torch.complex128)
    diff = transfer(A + E, B, C, s) - transfer(A, B, C, s)
    want = diff.abs().max().item() / transfer(A, B, C, s).abs().max().item()
    assert out["error"] == pytest.approx(want, rel=1e-6)
    assert out["error_ratio"] < 0.1  # O(eps): a hundred times smaller eps, much smaller error
    assert out["log10_kappa_exact"] > 5 and out["kappa_ptd"] < 10 ** out["log10_kappa_exact"]


def test_bad_options():
    with pytest.raises(ConfigError, match="eps"):
        ptd_transfer_uniform_error(0, eps=0.0)
