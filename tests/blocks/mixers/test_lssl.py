"""LSSL (arXiv:2110.13985): HiPPO-LegS init, the bilinear rule (its exact frequency map), the
Krylov kernel against matrix powers and against the recurrence, options."""
import math

import pytest
import torch

from layerlab.blocks.mixers.hippo import hippo_legs, transfer
from layerlab.blocks.mixers.lssl import LSSL
from layerlab.errors import ConfigError

from .contract import SHAPES, check_forms_agree, check_step_matches_forward


def make(**kw):
    return LSSL(3, d_state=kw.pop("d_state", 6), dtype=torch.float64, generator=torch.Generator().manual_seed(0), **kw)


def test_init_is_hippo_legs():
    block = make()
    A, B = hippo_legs(6)
    assert torch.equal(block.A.detach(), A) and torch.equal(block.B.detach(), B)


def test_bilinear_rule_scalar():
    """N = 1: Abar = (1 + dt a / 2) / (1 - dt a / 2), Bbar = dt b / (1 - dt a / 2)."""
    block = make(d_state=1)
    Abar, Bbar = block.discretize(torch.float64)
    dt = torch.exp(block.log_dt.detach())
    a, b = block.A.item(), block.B.item()
    assert torch.allclose(Abar[:, 0, 0], (1 + dt * a / 2) / (1 - dt * a / 2), rtol=1e-14)
    assert torch.allclose(Bbar[:, 0], dt * b / (1 - dt * a / 2), rtol=1e-14)


def test_bilinear_maps_frequencies_exactly():
    """sum_l K_l z^-l = 2 / (1 + z^-1) * G(s) at s = (2 / dt) (1 - z^-1) / (1 + z^-1) on the unit circle:
    the discrete system is the continuous one seen through the bilinear frequency warp."""
    block = make(d_state=8)
    Abar, Bbar = block.discretize(torch.float64)
    dt = torch.exp(block.log_dt.detach())
    theta = torch.linspace(0.05, 3.0, 40, dtype=torch.float64)
    z = torch.exp(1j * theta)
    I = torch.eye(8, dtype=torch.complex128)
    for h in range(3):
        # discrete: C (I - z^-1 Abar)^{-1} Bbar
        M = I - z[:, None, None] ** -1 * Abar[h].to(torch.complex128)
        Hd = torch.linalg.solve(M, Bbar[h].to(torch.complex128).expand(40, 8)) @ block.C[h].detach().to(torch.complex128)
        s = (2 / dt[h]) * (1 - 1 / z) / (1 + 1 / z)
        G = transfer(block.A.detach(), block.B.detach(), block.C[h].detach(), s)
        assert ((Hd - 2 / (1 + 1 / z) * G).abs().max() / G.abs().max()).item() < 1e-10


def test_bilinear_hippo_is_stable():
    Abar, _ = make(d_state=16).discretize(torch.float64)
    assert torch.linalg.eigvals(Abar).abs().max().item() < 1.0


def test_krylov_kernel_equals_matrix_powers():
    block = make(d_state=6)
    L = 37  # not a power of two
    K = block.kernel(L, torch.float64)
    Abar, Bbar = block.discretize(torch.float64)
    for h in range(3):
        want = torch.stack([block.C[h] @ torch.linalg.matrix_power(Abar[h], l) @ Bbar[h] for l in range(L)])
        assert ((K[h] - want).abs().max() / want.abs().max()).item() < 1e-10


@pytest.mark.parametrize("mixing", ["none"])  # the shared contract runs the default mixing="linear"
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_krylov_equals_recurrence(shape, dtype, mixing):
    torch.manual_seed(0)
    block = LSSL(4, d_state=8, mixing=mixing, dtype=dtype)
    with torch.no_grad():  # large steps too
        block.log_dt.uniform_(math.log(0.1), 0.0)
    check_forms_agree(block, *shape)
    if dtype == torch.float64:
        check_step_matches_forward(block, *shape)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="d_state"):
        LSSL(4, d_state=0)
    with pytest.raises(ConfigError, match="dt_min"):
        LSSL(4, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ConfigError, match="mixing"):
        LSSL(4, mixing="glu")
