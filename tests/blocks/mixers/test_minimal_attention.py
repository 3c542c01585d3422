"""Reduced attention ("Reducing the Transformer Architecture to a Minimum", arXiv:2410.13732):
collapsed query-key equals separate projections with W = W_Q W_K^T, symmetric similarity gives
symmetric scores with about half the parameters, values=False is W^V = W^O = I; forms, step-free
contract checks on the variants, options."""
import math

import pytest
import torch

from layerlab.blocks.mixers.attention import CausalSelfAttention
from layerlab.errors import ConfigError

from .contract import check_causal, check_forms_agree

D, H = 12, 3


def block(**kw):
    torch.manual_seed(0)
    return CausalSelfAttention(D, n_heads=H, dtype=torch.float64, **kw)


def test_default_is_unchanged():
    b = block()
    assert sorted(n for n, _ in b.named_parameters()) == ["w_o.weight", "w_qkv.weight"]
    assert sum(p.numel() for p in b.parameters()) == 4 * D * D


@pytest.mark.parametrize("values", [True, False])
def test_collapsed_equals_separate_with_product(values):
    sep, col = block(values=values), block(qk="collapsed", values=values)
    Wq, Wk = sep.w_qkv.weight[:D].T, sep.w_qkv.weight[D:2 * D].T  # x -> x Wq
    with torch.no_grad():
        for i in range(H):
            sl = slice(i * sep.d_head, (i + 1) * sep.d_head)
            col.w_qk[i] = Wq[:, sl] @ Wk[:, sl].T
        if values:
            col.w_qkv.weight.copy_(sep.w_qkv.weight[2 * D:])
            col.w_o.weight.copy_(sep.w_o.weight)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    for mode in ("sdpa", "reference"):
        a, b = sep(x, mode), col(x, mode)
        assert ((a - b).norm() / a.norm()).item() < 1e-12
    assert torch.allclose(sep.attention_probabilities(x), col.attention_probabilities(x), atol=1e-13)


def test_symmetric_scores_and_parameter_count():
    b = block(qk="symmetric")
    W = b.similarity()
    assert torch.equal(W, W.transpose(-2, -1))
    x = torch.randn(2, 7, D, dtype=torch.float64)
    scores = torch.einsum("btd,hde,bse->bhts", x, W, x)
    assert ((scores - scores.transpose(-2, -1)).abs().max() / scores.abs().max()).item() < 1e-14
    assert b.w_qk.shape == (H, D * (D + 1) // 2)
    # the causal weights are the softmax of these scores / sqrt(d_h), masked
    P = b.attention_probabilities(x)
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)
    want = torch.softmax((scores / math.sqrt(b.d_head)).masked_fill(future, float("-inf")), -1)
    assert torch.allclose(P, want, atol=1e-13)
    # every upper-triangle parameter lands in two mirrored entries (one on the diagonal)
    with torch.no_grad():
        b.w_qk.zero_()
        b.w_qk[0, 1] = 1.0  # entry (0, 1)
    W = b.similarity()
    assert W[0, 0, 1] == 1 and W[0, 1, 0] == 1 and W.abs().sum() == 2


def test_no_values_is_identity_value_and_output():
    red, full = block(values=False), block()
    with torch.no_grad():
        full.w_qkv.weight[:2 * D].copy_(red.w_qkv.weight)
        full.w_qkv.weight[2 * D:].copy_(torch.eye(D))
        full.w_o.weight.copy_(torch.eye(D))
    x = torch.randn(2, 8, D, dtype=torch.float64)
    assert torch.allclose(red(x), full(x), atol=1e-13)
    assert sum(p.numel() for p in red.parameters()) == 2 * D * D


@pytest.mark.parametrize("qk", ["collapsed", "symmetric"])
@pytest.mark.parametrize("values", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reduced_forms_agree_and_are_causal(qk, values, dtype):
    torch.manual_seed(1)
    b = CausalSelfAttention(D, n_heads=H, qk=qk, values=values, dtype=dtype)
    for B, L in [(1, 1), (2, 7)]:
        check_forms_agree(b, B, L)
    if dtype == torch.float64:
        check_causal(b)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="qk must be"):
        CausalSelfAttention(D, n_heads=H, qk="tied")
    with pytest.raises(ConfigError, match="rope needs separate"):
        CausalSelfAttention(D, n_heads=H, qk="collapsed", rope=True)
    with pytest.raises(ConfigError, match="similarity"):
        CausalSelfAttention(D, n_heads=H).similarity()
