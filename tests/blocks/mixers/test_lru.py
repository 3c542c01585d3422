"""LRU: scan vs token loop with the GLU mixing, the paper's kernel, the ring initialization, the
gamma normalization, options (the shared contract runs the default; the scan: test_scan.py)."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers.lru import LRU
from layerlab.errors import ConfigError, ShapeError

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err


# --- the contract with the GLU mixing (tests/blocks/test_mixer_contract.py runs the default) --
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_scan_matches_reference_with_glu(shape, dtype):
    torch.manual_seed(0)
    block = LRU(8, d_state=12, mixing="glu", dtype=dtype)
    check_forms_agree(block, *shape)


@pytest.mark.parametrize("mixing", ["none", "glu"])
def test_step_causality_state_size(mixing):
    torch.manual_seed(1)
    block = LRU(8, d_state=5, mixing=mixing, dtype=torch.float64)
    check_step_matches_forward(block, 2, 13)
    check_causal(block)
    check_state_size(block)
    assert block.state_size == 2 * 5  # complex state of N = 5 entries: 10 real numbers


@pytest.mark.parametrize("mode", LRU.modes)
def test_gradcheck(mode):
    torch.manual_seed(2)
    block = LRU(3, d_state=2, mixing="glu", dtype=torch.float64)
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def test_impulse_response_is_the_papers_kernel():
    """Feeding u = e_h at k = 0 gives y_k = Re(C diag(lambda)^k diag(gamma) B e_h) + D_h e_h [k = 0]:
    the unrolled Eq. 7, computed here in closed form with powers of lambda."""
    torch.manual_seed(3)
    H, N, L = 4, 6, 9
    block = LRU(H, d_state=N, r_min=0.5, r_max=0.95, dtype=torch.float64)
    u = torch.zeros(1, L, H, dtype=torch.float64)
    u[0, 0, 1] = 1.0
    y = block(u)[0]
    lam = torch.exp(torch.complex(-block.nu_log.exp(), block.theta_log.exp()))
    gB = torch.exp(block.gamma_log) * torch.complex(block.B_re[:, 1], block.B_im[:, 1])
    C = torch.complex(block.C_re, block.C_im)
    expected = torch.stack([(C @ (lam ** k * gB)).real for k in range(L)])
    expected[0, 1] += block.D[1]
    assert rel_err(y, expected.detach()) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = LRU(8, d_state=4, mixing="glu", dtype=dtype)
    y = block(torch.randn(2, 5, 8, dtype=dtype))
    assert y.dtype == dtype and y.shape == (2, 5, 8) and torch.isfinite(y.float()).all()


# --- initialization --------------------------------------------------------------------------
def test_ring_initialization_is_uniform_on_the_ring():
    """Lemma 2 (Sec. 3.2): |lambda| in [r_min, r_max], uniform in AREA (so |lambda|^2 is uniform), and the
    phase uniform on (0, max_phase]. N = 20000 draws: standard errors below 0.4%."""
    r_min, r_max, phase = 0.4, 0.99, math.pi / 10
    block = LRU(2, d_state=20000, r_min=r_min, r_max=r_max, max_phase=phase, dtype=torch.float64,
                generator=torch.Generator().manual_seed(0))
    lam = block.eigenvalues().detach()
    r, theta = lam.abs(), lam.angle()
    assert r.min() >= r_min - 1e-12 and r.max() <= r_max + 1e-12
    assert theta.min() > 0 and theta.max() <= phase + 1e-12
    # the fraction inside the mid radius is its share of the ring's area (0.394), not 1/2
    mid = (r_min + r_max) / 2
    area_share = (mid ** 2 - r_min ** 2) / (r_max ** 2 - r_min ** 2)
    assert abs((r < mid).double().mean().item() - area_share) < 0.015
    assert abs((r ** 2).mean().item() - (r_min ** 2 + r_max ** 2) / 2) < 0.01
    assert abs(theta.mean().item() / phase - 0.5) < 0.015
    # gamma = sqrt(1 - |lambda|^2) at init
    assert torch.allclose(block.gamma_log.exp(), torch.sqrt(1 - r ** 2), rtol=1e-12, atol=0)


def test_projection_initialization_scales():
    """B parts N(0, 1/(2H)), C parts N(0, 1/N), D N(0, 1); thousands of draws, tolerance 5-15%."""
    H, N = 256, 64
    block = LRU(H, d_state=N, generator=torch.Generator().manual_seed(1))
    for p in (block.B_re, block.B_im):
        assert abs(p.std().item() * math.sqrt(2 * H) - 1) < 0.05
    for p in (block.C_re, block.C_im):
        assert abs(p.std().item() * math.sqrt(N) - 1) < 0.05
    assert abs(block.D.std().item() - 1) < 0.15  # 256 draws: SE of the std ~ 4.4%


def test_gamma_normalization_keeps_white_noise_state_variance():
    """Sec. 3.4: with gamma = sqrt(1 - |lambda|^2), white-noise input gives every state coordinate
    the variance of its input (B u)_j at stationarity: E|x_j|^2 / E|(Bu)_j|^2 -> 1. Measured over
    512 sequences at steps 200..299 (the slowest mode decays as 0.95^k: stationary by k = 200);
    tolerance 10% per coordinate, 4% on the mean (|x_j|^2 is exponential: SE ~ 1-3%)."""
    H, N = 8, 16
    block = LRU(H, d_state=N, r_min=0.5, r_max=0.95, dtype=torch.float64,
                generator=torch.Generator().manual_seed(2))
    u = torch.randn(512, 300, H, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        x = block.states(u)
        input_var = (block.B_re ** 2 + block.B_im ** 2).sum(dim=1)  # E|(Bu)_j|^2 for unit white noise
        ratio = (x[:, 200:].abs() ** 2).mean(dim=(0, 1)) / input_var
        # without the normalization the same states are larger by 1 / (1 - |lambda|^2)
        unnormalized = ratio / torch.exp(2 * block.gamma_log)
    assert (ratio - 1).abs().max() < 0.10, ratio
    assert abs(ratio.mean().item() - 1) < 0.04
    # the blow-up the normalization removes: 1/(1 - r^2) in [1.3, 10], mean 3.1 on this ring (Proposition 3)
    assert unnormalized.mean() > 2


def test_eigenvalues_stay_in_the_unit_disk_for_any_parameter():
    block = LRU(4, d_state=3, dtype=torch.float64)
    with torch.no_grad():
        block.nu_log.copy_(torch.tensor([-30.0, 0.0, 5.0]))
        block.theta_log.copy_(torch.tensor([3.0, -2.0, 0.5]))
    mod = block.eigenvalues().abs()
    assert (mod <= 1).all() and (mod > 0).all() and mod[0] > 1 - 1e-12
    assert torch.isfinite(block(torch.randn(2, 50, 4, dtype=torch.float64))).all()


def test_generator_controls_init_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a = LRU(8, d_state=4, mixing="glu", generator=torch.Generator().manual_seed(7))
    b = LRU(8, d_state=4, mixing="glu", generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# --- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options, match", [
    ({"r_max": 1.0}, "r_max < 1"),
    ({"r_min": 0.99, "r_max": 0.9}, "r_min <= r_max"),
    ({"r_min": -0.1}, "0 <= r_min"),
    ({"d_state": 0}, "d_state"),
    ({"max_phase": 0.0}, "max_phase"),
    ({"mixing": "mlp"}, "mixing"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        LRU(8, **options)


def test_registered_and_strict():
    block = layerlab.build("mixer", "lru", 8, d_state=4)
    assert isinstance(block, LRU) and block.paper.arxiv == "2303.06349"
    with pytest.raises(ConfigError, match="negative_eigenvalues"):
        layerlab.build("mixer", "lru", 8, negative_eigenvalues=True)
    with pytest.raises(ShapeError):
        block(torch.randn(2, 3, 6))
