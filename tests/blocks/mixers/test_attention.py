"""Causal self-attention: sdpa vs reference for head counts the contract does not run, the
attention probabilities, equality with torch's MultiheadAttention, rotary positions, init.
(The shared contract, tests/blocks/test_mixer_contract.py, covers forms, causality, state_dict.)"""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers import CausalSelfAttention, Mixer
from layerlab.blocks.mixers.attention import rope
from layerlab.errors import ConfigError, ShapeError

from .contract import check_forms_agree

# (B, L, D, n_heads): one head, many heads, heads of width 1 (the contract runs n_heads = 2)
VARIANTS = [(2, 7, 12, 3), (2, 13, 16, 1), (1, 5, 24, 6), (2, 3, 8, 8)]


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run(block, x, cot, mode):
    x = x.detach().clone().requires_grad_(True)
    block.zero_grad()
    y = block(x, mode=mode)
    (y * cot).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in block.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", VARIANTS, ids=str)
def test_sdpa_matches_reference_for_other_head_counts_with_bias(shape, dtype):
    B, L, D, H = shape
    torch.manual_seed(1000 * B + 10 * L + H)
    block = CausalSelfAttention(D, n_heads=H, bias=True, dtype=dtype)
    for p in block.parameters():  # biases of order 1/sqrt(D) too: attention far from uniform
        torch.nn.init.normal_(p, std=1 / math.sqrt(D))
    check_forms_agree(block, B, L)


def test_attention_probabilities_are_the_causal_softmax():
    """(B, h, L, L): softmax(Q K^T / sqrt(d_h)) over keys 0..t, written out here from w_qkv,
    rows summing to 1, zero above the diagonal; the reference output is probabilities times V."""
    torch.manual_seed(3)
    B, L, D, H = 2, 6, 12, 3
    block = CausalSelfAttention(D, n_heads=H, dtype=torch.float64)
    x = torch.randn(B, L, D, dtype=torch.float64)
    p = block.attention_probabilities(x)
    assert p.shape == (B, H, L, L) and p.dtype == torch.float64
    q, k, v = block.w_qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
    for t in range(L):
        scores = torch.einsum("bhd,bhsd->bhs", q[:, :, t], k[:, :, : t + 1]) / math.sqrt(D // H)
        assert torch.allclose(p[:, :, t, : t + 1], torch.softmax(scores, dim=-1), rtol=0, atol=1e-14)
        assert torch.count_nonzero(p[:, :, t, t + 1:]) == 0
    expected = block.w_o((p @ v).transpose(1, 2).reshape(B, L, D))
    assert rel_err(block(x, mode="reference"), expected) <= 1e-14
    assert rel_err(block(x), expected) <= 1e-10  # and the sdpa form
    with pytest.raises(ShapeError, match="attention_probabilities"):
        block.attention_probabilities(torch.randn(B, L, D + 1, dtype=torch.float64))
    low = CausalSelfAttention(8, n_heads=2, dtype=torch.bfloat16)
    assert low.attention_probabilities(torch.randn(1, 3, 8, dtype=torch.bfloat16)).dtype == torch.float32


def test_attention_probabilities_with_rope_reproduce_the_output():
    torch.manual_seed(4)
    block = CausalSelfAttention(16, n_heads=2, rope=True, rope_fraction=0.5, dtype=torch.float64)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    p = block.attention_probabilities(x)
    _, _, v = block._heads(x)
    y = block.w_o((p @ v).transpose(1, 2).reshape(2, 9, 16))
    assert rel_err(block(x), y) <= 1e-10
    plain = CausalSelfAttention(16, n_heads=2, dtype=torch.float64)
    plain.load_state_dict(block.state_dict())
    assert (plain.attention_probabilities(x) - p).abs().max() > 1e-3  # positions change the weights


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mode", CausalSelfAttention.modes)
def test_dtype_preserved(dtype, mode):
    block = CausalSelfAttention(16, n_heads=4, dtype=dtype)
    y = block(torch.randn(2, 5, 16, dtype=dtype), mode=mode)
    assert y.dtype == dtype and y.shape == (2, 5, 16)


def test_default_mode_is_sdpa():
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
    pos = torch.arange(40)
    rq, rk = rope(q, pos, 10000.0), rope(k, pos, 10000.0)
    scores = (rq @ rk.transpose(-2, -1))[0, 0]
    for offset in (0, 1, 5):
        diag = torch.diagonal(scores, offset=-offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), rtol=0, atol=1e-12)
    assert not torch.allclose(scores[10, 10], scores[10, 5])  # and it does depend on the offset
    # the rotation keeps norms
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-12)


def test_rope_positions_broadcast_per_token():
    """One token at a time (a step, positions (B, 1) against (B, h, d)) equals the whole sequence
    rotated at once; position 0 is the identity."""
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)  # (B, h, L, d)
    whole = rope(x, torch.arange(7))
    for t in range(7):
        one = rope(x[:, :, t], torch.full((2, 1), t))
        assert torch.allclose(one, whole[:, :, t], rtol=0, atol=1e-15)
    assert torch.equal(whole[:, :, 0], x[:, :, 0])


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
