"""Causal self-attention: sdpa vs reference (outputs and gradients), causality, contracts."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers import CausalSelfAttention, Mixer
from layerlab.errors import ConfigError, ShapeError

# (B, L, D, n_heads): length 1, odd lengths, one head, many heads
SHAPES = [(1, 1, 8, 2), (2, 7, 12, 3), (3, 16, 32, 4), (2, 33, 16, 1), (1, 5, 24, 6), (2, 2, 8, 8)]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run(block, x, cot, mode):
    x = x.detach().clone().requires_grad_(True)
    block.zero_grad()
    y = block(x, mode=mode)
    (y * cot).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in block.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sdpa_matches_reference_outputs_and_gradients(shape, dtype):
    B, L, D, H = shape
    torch.manual_seed(1000 * B + 10 * L + H)
    block = CausalSelfAttention(D, n_heads=H, bias=True, dtype=dtype)
    for p in block.parameters():  # weights of order 1/sqrt(D): attention far from uniform
        torch.nn.init.normal_(p, std=1 / math.sqrt(D))
    x = torch.randn(B, L, D, dtype=dtype)
    cot = torch.randn(B, L, D, dtype=dtype)
    y_f, gx_f, gp_f = run(block, x, cot, "sdpa")
    y_r, gx_r, gp_r = run(block, x, cot, "reference")
    assert rel_err(y_f, y_r) <= TOL[dtype]
    assert rel_err(gx_f, gx_r) <= TOL[dtype]
    for a, b in zip(gp_f, gp_r):
        assert rel_err(a, b) <= TOL[dtype]


def test_reference_equals_torch_multihead_attention():
    """The written-out reference is standard attention: compare with nn.MultiheadAttention."""
    torch.manual_seed(0)
    B, L, D, H = 2, 9, 12, 3
    block = CausalSelfAttention(D, n_heads=H, dtype=torch.float64)
    mha = torch.nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(block.w_qkv.weight)
        mha.out_proj.weight.copy_(block.w_o.weight)
    x = torch.randn(B, L, D, dtype=torch.float64)
    mask = torch.ones(L, L, dtype=torch.bool).triu(1)
    expected, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
    assert rel_err(block(x, mode="reference"), expected) <= 1e-12


@pytest.mark.parametrize("mode", CausalSelfAttention.modes)
def test_causal_exactly(mode):
    torch.manual_seed(1)
    B, L, D = 2, 11, 16
    block = CausalSelfAttention(D, n_heads=4)
    x = torch.randn(B, L, D)
    y = block(x, mode=mode)
    for t in (0, 4, L - 1):
        x2 = x.clone()
        x2[:, t] = torch.randn(B, D)
        y2 = block(x2, mode=mode)
        assert torch.equal(y2[:, :t], y[:, :t]), f"output before {t} changed"
        assert not torch.allclose(y2[:, t], y[:, t]), f"output at {t} ignored its input"


@pytest.mark.parametrize("mode", CausalSelfAttention.modes)
def test_gradcheck(mode):
    torch.manual_seed(2)
    block = CausalSelfAttention(4, n_heads=2, bias=True, dtype=torch.float64)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def test_heads_must_divide_width():
    with pytest.raises(ConfigError) as info:
        CausalSelfAttention(30, n_heads=4)
    msg = str(info.value)
    assert "d_model=30" in msg and "n_heads=4" in msg and "32" in msg
    with pytest.raises(ConfigError):
        layerlab.build("mixer", "attention", 30, n_heads=4)
    with pytest.raises(ConfigError):
        CausalSelfAttention(8, n_heads=0)


def test_wrong_shape_and_unknown_mode():
    block = CausalSelfAttention(8, n_heads=2)
    with pytest.raises(ShapeError, match=r"\(B, L, D\) with D = d_model = 8"):
        block(torch.randn(3, 8))
    with pytest.raises(ShapeError, match="got \\(2, 3, 6\\)"):
        block(torch.randn(2, 3, 6))
    with pytest.raises(ConfigError, match="sdpa, reference"):
        block(torch.randn(2, 3, 8), mode="chunked")


def test_state_dict_round_trip():
    torch.manual_seed(3)
    a = CausalSelfAttention(16, n_heads=4, bias=True)
    b = CausalSelfAttention(16, n_heads=4, bias=True)
    x = torch.randn(2, 5, 16)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mode", CausalSelfAttention.modes)
def test_dtype_preserved(dtype, mode):
    block = CausalSelfAttention(16, n_heads=4, dtype=dtype)
    y = block(torch.randn(2, 5, 16, dtype=dtype), mode=mode)
    assert y.dtype == dtype and y.shape == (2, 5, 16)


def test_default_mode_is_sdpa_and_mixer_contract():
    assert issubclass(CausalSelfAttention, Mixer)
    assert CausalSelfAttention.modes[0] == "sdpa" and "reference" in CausalSelfAttention.modes
    torch.manual_seed(4)
    block = CausalSelfAttention(8, n_heads=2)
    x = torch.randn(1, 4, 8)
    assert torch.equal(block(x), block(x, mode="sdpa"))


def test_init_statistics():
    torch.manual_seed(5)
    block = CausalSelfAttention(256, n_heads=4, bias=True)
    for lin in (block.w_qkv, block.w_o):
        assert abs(lin.weight.std().item() * 16 - 1) < 0.02  # std 256^-1/2; n >= 65536: SE ~ 0.3%
        assert abs(lin.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(lin.bias) == 0


def test_output_dropout_same_mask_in_both_modes():
    torch.manual_seed(6)
    block = CausalSelfAttention(16, n_heads=2, dropout=0.5).train()
    x = torch.randn(2, 6, 16)
    torch.manual_seed(7)
    y_f = block(x, mode="sdpa")
    torch.manual_seed(7)
    y_r = block(x, mode="reference")
    assert (y_f == 0).float().mean() > 0.3  # dropout acted
    assert torch.equal(y_f == 0, y_r == 0)
    assert rel_err(y_f, y_r) <= 1e-4
    block.eval()
    assert torch.equal(block(x), block(x))


def test_rope_scores_depend_on_relative_position_only():
    """RoFormer's property: <R_m q, R_n k> = <q, R_{n-m} k>, so scores are shift-invariant."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64).expand(1, 1, 40, 16)
    k = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64).expand(1, 1, 40, 16)
    rq, rk = CausalSelfAttention.rotate(q, 10000.0), CausalSelfAttention.rotate(k, 10000.0)
    scores = (rq @ rk.transpose(-2, -1))[0, 0]
    for offset in (0, 1, 5):
        diag = torch.diagonal(scores, offset=-offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), rtol=0, atol=1e-12)
    assert not torch.allclose(scores[10, 10], scores[10, 5])  # and it does depend on the offset
    # the rotation keeps norms
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 1, 16, 2), (2, 9, 32, 4)], ids=str)
def test_rope_sdpa_matches_reference(shape):
    B, L, D, H = shape
    torch.manual_seed(1)
    block = layerlab.build("mixer", "attention", D, n_heads=H, rope=True, dtype=torch.float64)
    x = torch.randn(B, L, D, dtype=torch.float64)
    cot = torch.randn(B, L, D, dtype=torch.float64)
    ya, gxa, _ = run(block, x, cot, "sdpa")
    yb, gxb, _ = run(block, x, cot, "reference")
    assert rel_err(ya, yb) <= 1e-10 and rel_err(gxa, gxb) <= 1e-10
    no_rope = layerlab.build("mixer", "attention", D, n_heads=H, dtype=torch.float64)
    no_rope.load_state_dict(block.state_dict())
    if L > 1:
        assert rel_err(no_rope(x), ya) > 1e-3  # rotation changes the function


def test_rope_needs_even_head_dim():
    with pytest.raises(ConfigError, match="even head dimension"):
        layerlab.build("mixer", "attention", 12, n_heads=4, rope=True)


def test_partial_rope_rotates_only_its_fraction():
    torch.manual_seed(2)
    full = layerlab.build("mixer", "attention", 32, n_heads=2, rope=True, rope_fraction=0.5, dtype=torch.float64)
    plain = layerlab.build("mixer", "attention", 32, n_heads=2, dtype=torch.float64)
    plain.load_state_dict(full.state_dict())
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    (q1, k1, v1), (q0, k0, v0) = full._heads(x), plain._heads(x)
    assert full.rope_dims == 8
    assert torch.equal(q1[..., 8:], q0[..., 8:]) and torch.equal(k1[..., 8:], k0[..., 8:])
    assert not torch.allclose(q1[..., 1:, :8], q0[..., 1:, :8])
    assert torch.equal(q1[..., 0, :], q0[..., 0, :])  # position 0 is not rotated
    assert torch.equal(v1, v0)
    y_sdpa, y_ref = full(x), full(x, mode="reference")
    assert rel_err(y_sdpa, y_ref) <= 1e-10
    with pytest.raises(ConfigError, match="rope_fraction"):
        layerlab.build("mixer", "attention", 32, n_heads=2, rope=True, rope_fraction=0.0)
