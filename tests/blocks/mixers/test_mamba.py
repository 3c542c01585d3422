"""Mamba (S6): scan vs token loop with negative eigenvalues and any chunking, the range of the
transition, the Delta initialization, the causal short convolution, options (the shared
contract, tests/blocks/test_mixer_contract.py, runs the default block)."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.mixers.mamba import Mamba
from layerlab.errors import ConfigError, ShapeError
from tests.conftest import skip_without_compiler

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_scan_matches_reference_with_negative_eigenvalues(shape, dtype):
    """Transitions in (-1, 1) (the shared contract runs the default, in (0, 1))."""
    torch.manual_seed(0)
    block = Mamba(8, d_state=4, negative_eigenvalues=True, dtype=dtype)
    check_forms_agree(block, *shape)


@pytest.mark.parametrize("chunk_size", [1, 5, 128])
def test_scan_chunking_does_not_change_the_result(chunk_size):
    """The state carried across chunks: any chunk size (1, uneven, one chunk for all) gives the loop."""
    torch.manual_seed(8)
    block = Mamba(8, d_state=3, chunk_size=chunk_size, negative_eigenvalues=True, dtype=torch.float64)
    check_forms_agree(block, 2, 33)


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("conv_size", [1, 4])
def test_step_causality_state_size(negative, conv_size):
    torch.manual_seed(1)
    block = Mamba(8, d_state=3, conv_size=conv_size, negative_eigenvalues=negative, dtype=torch.float64)
    check_step_matches_forward(block, 2, 11)
    check_causal(block)
    check_state_size(block)
    E = block.d_inner
    assert block.state_size == E * (conv_size - 1) + E * 3  # conv buffer + SSM state


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("mode", Mamba.modes)
def test_gradcheck(mode, negative):
    torch.manual_seed(2)
    block = Mamba(4, d_state=2, expand=1, conv_size=2, negative_eigenvalues=negative, bias=True,
                  dtype=torch.float64)
    x = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def _transitions(block: Mamba, u: torch.Tensor) -> torch.Tensor:
    x, _ = block.in_proj(u).chunk(2, dim=-1)
    delta, _, _ = block.selection(block.conv(x))
    return block.transition(delta)


def test_transition_range_with_and_without_negative_eigenvalues():
    """exp(Delta A) lies in (0, 1); with the option, 2 exp(Delta A) - 1 lies in (-1, 1) and at init
    already reaches negative values (Delta up to ~0.1, A down to -16: exp(-1.6) ~ 0.2 -> -0.6)."""
    torch.manual_seed(3)
    plain = Mamba(32, d_state=16, dtype=torch.float64)
    signed = Mamba(32, d_state=16, negative_eigenvalues=True, dtype=torch.float64)
    signed.load_state_dict(plain.state_dict())
    u = torch.randn(4, 50, 32, dtype=torch.float64) * 3
    with torch.no_grad():
        a, s = _transitions(plain, u), _transitions(signed, u)
    assert a.min() > 0 and a.max() < 1
    assert s.min() > -1 and s.max() < 1
    assert s.min() < -0.3 and (s < 0).double().mean() > 0.05
    assert torch.equal(s, 2 * a - 1)


def test_negative_transition_flips_the_state_sign():
    """With the option a large step makes Abar ~ -1: a single-channel state then alternates sign,
    which running parity needs; without it the state keeps its sign (Abar in (0, 1))."""
    for negative, expect_flip in ((False, False), (True, True)):
        block = Mamba(4, d_state=1, expand=1, negative_eigenvalues=negative, dtype=torch.float64)
        with torch.no_grad():
            block.A_log.fill_(math.log(50.0))
            delta = torch.full((1, 4), 2.0, dtype=torch.float64)  # Delta A = -100: exp ~ 0
            Abar = block.transition(delta)
        h = torch.ones(1, 4, 1, dtype=torch.float64)
        signs = []
        for _ in range(4):
            h = Abar * h
            signs.append(torch.sign(h).flatten()[0].item())
        assert (signs == [-1.0, 1.0, -1.0, 1.0]) == expect_flip


def test_delta_initialization_range():
    """softplus(b_Delta) is log-uniform on [dt_min, dt_max]: all inside, mean log at the midpoint
    (512 channels: SE of the mean log 0.06, tolerance 0.25)."""
    block = Mamba(256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    dt = F.softplus(block.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-9) and dt.max() <= 1e-1 * (1 + 1e-9)
    assert abs(dt.log().mean().item() - math.log(1e-2)) < 0.25
    assert dt.log().std().item() == pytest.approx(math.log(100) / math.sqrt(12), rel=0.15)
    bound = block.dt_rank ** -0.5
    assert block.dt_proj.weight.abs().max() <= bound and block.dt_proj.weight.abs().max() > 0.9 * bound


def test_s4d_real_initialization_and_dt_rank():
    block = Mamba(40, d_state=5)
    A = -torch.exp(block.A_log.detach())
    assert torch.allclose(A, -torch.arange(1, 6, dtype=A.dtype).expand(block.d_inner, 5))
    assert torch.equal(block.D.detach(), torch.ones(block.d_inner))
    assert block.dt_rank == 3 and block.d_inner == 80  # ceil(40/16), E = 2
    assert Mamba(40, dt_rank=7).dt_rank == 7


def test_conv_is_causal_with_receptive_field_conv_size():
    """Perturbing the conv input at t changes its outputs at t .. t+K-1 only."""
    torch.manual_seed(5)
    K = 4
    block = Mamba(8, conv_size=K, dtype=torch.float64)
    x = torch.randn(2, 12, block.d_inner, dtype=torch.float64)
    with torch.no_grad():
        y = block.conv(x)
        for t in (0, 5, 11):
            x2 = x.clone()
            x2[:, t] += 1.0
            changed = (block.conv(x2) - y).abs().amax(dim=(0, 2)) > 0
            expected = torch.zeros(12, dtype=torch.bool)
            expected[t:t + K] = True
            assert torch.equal(changed, expected), (t, changed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mode", Mamba.modes)
def test_dtype_preserved(dtype, mode):
    block = Mamba(8, d_state=4, dtype=dtype)
    y = block(torch.randn(2, 5, 8, dtype=dtype), mode=mode)
    assert y.dtype == dtype and y.shape == (2, 5, 8) and torch.isfinite(y.float()).all()


def test_bfloat16_close_to_float32():
    torch.manual_seed(7)
    full = Mamba(16, d_state=4)
    half = Mamba(16, d_state=4, dtype=torch.bfloat16)
    half.load_state_dict(full.state_dict())
    x = torch.randn(2, 20, 16)
    assert rel_err(half(x.bfloat16()).float(), full(x)) < 0.05  # bf16 projections: ~3 significant digits


def test_generator_controls_init_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a = Mamba(8, generator=torch.Generator().manual_seed(8))
    b = Mamba(8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("options, match", [
    ({"d_state": 0}, "d_state"),
    ({"expand": 0}, "expand"),
    ({"conv_size": 0}, "conv_size"),
    ({"dt_rank": 0}, "dt_rank"),
    ({"dt_rank": "full"}, "dt_rank"),
    ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min <= dt_max"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        Mamba(8, **options)


def test_registered_and_strict():
    block = layerlab.build("mixer", "mamba", 8, negative_eigenvalues=True)
    assert isinstance(block, Mamba) and block.negative_eigenvalues and block.paper.arxiv == "2312.00752"
    with pytest.raises(ConfigError, match="unknown option"):
        layerlab.build("mixer", "mamba", 8, n_heads=2)
    with pytest.raises(ShapeError):
        block(torch.randn(2, 3, 6))


@pytest.mark.parametrize("switched_off", [False, True])
def test_scan_is_the_fused_kernel_and_falls_back_without_it(monkeypatch, switched_off):
    """Mode "scan" runs the fused selective scan (compiled on first use); with
    LAYERLAB_NO_EXTENSIONS=1 it runs the PyTorch chunk form; both equal the token loop."""
    from layerlab.kernels import selective_scan as ss

    if not switched_off:
        skip_without_compiler("the fused selective scan")
    if switched_off:
        monkeypatch.setenv(ss.NO_EXTENSIONS_ENV, "1")
    else:
        monkeypatch.delenv(ss.NO_EXTENSIONS_ENV, raising=False)
    calls = []
    apply = ss._FusedScan.apply
    monkeypatch.setattr(ss._FusedScan, "apply", staticmethod(lambda *a: calls.append(1) or apply(*a)))
    torch.manual_seed(9)
    block = Mamba(8, d_state=3, chunk_size=4, negative_eigenvalues=True, dtype=torch.float64)
    check_forms_agree(block, 2, 19)
    assert (len(calls) > 0) != switched_off


def test_double_backward_through_the_fused_scan():
    """A Hessian-vector product (create_graph) through mode "scan" equals the chunked form's: the
    fused kernel's backward differentiates the PyTorch form when a graph is asked for."""
    torch.manual_seed(10)
    block = Mamba(8, d_state=3, negative_eigenvalues=True, dtype=torch.float64)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    params = list(block.parameters())
    v = [torch.randn_like(p) for p in params]
    hv = {}
    for mode in ("scan", "chunked"):
        g = torch.autograd.grad(block(x, mode=mode).square().sum(), params, create_graph=True)
        hv[mode] = torch.cat([h.flatten() for h in torch.autograd.grad(g, params, v)])
    assert rel_err(hv["scan"], hv["chunked"]) <= 1e-10
