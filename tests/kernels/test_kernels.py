"""Chunked kernels against their token-by-token references: outputs, final states and gradients."""
import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError, ShapeError
from layerlab.kernels import delta_rule, linear_attention

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
# (B, H, L, D_k, D_v, chunk): length 1, lengths that are not a multiple of the chunk, one chunk, many
SHAPES = [(1, 1, 1, 4, 3, 4), (2, 3, 7, 8, 5, 4), (1, 2, 16, 6, 6, 16), (2, 1, 33, 5, 7, 8), (1, 1, 20, 4, 4, 64)]


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def inputs(shape, dtype, seed=0, state=False):
    B, H, L, Dk, Dv, _ = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, Dk, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(B, H, L, Dk, generator=g, dtype=dtype), dim=-1)  # the delta rule's unit keys
    v = torch.randn(B, H, L, Dv, generator=g, dtype=dtype)
    beta = torch.rand(B, H, L, generator=g, dtype=dtype) * 1.9 + 0.05  # (0, 2): eigenvalues in [-1, 1]
    s0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=dtype) if state else None
    return q, k, v, beta, s0


def outputs_and_grads(fn, tensors):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in tensors]
    out, state = fn(*leaves)
    g = torch.Generator().manual_seed(99)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + \
        (state * torch.randn(state.shape, generator=g, dtype=out.dtype)).sum()
    loss.backward()
    return out.detach(), state.detach(), [t.grad for t in leaves if t is not None]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_state", [False, True])
def test_delta_rule_chunk_matches_recurrent(shape, dtype, with_state):
    q, k, v, beta, s0 = inputs(shape, dtype, state=with_state)
    C = shape[-1]

    def run(mode):
        def fn(q, k, v, beta, s0=None):
            return delta_rule(q, k, v, beta, mode=mode, chunk_size=C, initial_state=s0)
        return outputs_and_grads(fn, [q, k, v, beta] + ([s0] if with_state else []))

    (o_r, s_r, g_r), (o_c, s_c, g_c) = run("recurrent"), run("chunk")
    tol = TOL[dtype]
    assert rel_err(o_c, o_r) <= tol and rel_err(s_c, s_r) <= tol
    for a, b in zip(g_c, g_r):
        assert rel_err(a, b) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_linear_attention_chunk_matches_recurrent(shape, dtype):
    q, k, v, _, s0 = inputs(shape, dtype, state=True)
    C = shape[-1]

    def run(mode):
        return outputs_and_grads(lambda q, k, v, s0: linear_attention(q, k, v, mode=mode, chunk_size=C,
                                                                     initial_state=s0), [q, k, v, s0])

    (o_r, s_r, g_r), (o_c, s_c, g_c) = run("recurrent"), run("chunk")
    tol = TOL[dtype]
    assert rel_err(o_c, o_r) <= tol and rel_err(s_c, s_r) <= tol
    for a, b in zip(g_c, g_r):
        assert rel_err(a, b) <= tol


def test_linear_attention_equals_masked_attention_without_softmax():
    q, k, v, _, _ = inputs((2, 2, 9, 4, 3, 4), torch.float64)
    out, state = linear_attention(q, k, v, mode="recurrent")
    scores = (q @ k.transpose(-1, -2)).tril()
    assert torch.allclose(out, scores @ v, atol=1e-12)
    assert torch.allclose(state, k.transpose(-1, -2) @ v, atol=1e-12)


def test_delta_rule_with_beta_one_stores_the_last_value_of_a_key():
    """With beta = 1 and a unit key written twice, reading that key returns the second value."""
    Dk, Dv = 4, 3
    key = F.normalize(torch.randn(Dk, dtype=torch.float64), dim=0)
    k = key.expand(1, 1, 2, Dk).contiguous()
    v = torch.randn(1, 1, 2, Dv, dtype=torch.float64)
    beta = torch.ones(1, 1, 2, dtype=torch.float64)
    _, M = delta_rule(k, k, v, beta, mode="chunk", chunk_size=2)
    assert torch.allclose(M[0, 0].T @ key, v[0, 0, 1], atol=1e-12)
    _, M_la = linear_attention(k, k, v, mode="chunk", chunk_size=2)  # additive memory mixes both
    assert not torch.allclose(M_la[0, 0].T @ key, v[0, 0, 1], atol=1e-3)


def test_state_carries_across_calls():
    q, k, v, beta, _ = inputs((1, 2, 12, 4, 4, 4), torch.float64)
    full, s_full = delta_rule(q, k, v, beta, mode="chunk", chunk_size=4)
    first, s1 = delta_rule(q[:, :, :5], k[:, :, :5], v[:, :, :5], beta[:, :, :5], mode="chunk", chunk_size=4)
    second, s2 = delta_rule(q[:, :, 5:], k[:, :, 5:], v[:, :, 5:], beta[:, :, 5:], mode="recurrent", initial_state=s1)
    assert torch.allclose(torch.cat([first, second], dim=2), full, atol=1e-12)
    assert torch.allclose(s2, s_full, atol=1e-12)


def test_causality():
    q, k, v, beta, _ = inputs((1, 1, 10, 4, 4, 4), torch.float64)
    base, _ = delta_rule(q, k, v, beta, chunk_size=4)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6] = F.normalize(torch.randn(4, dtype=torch.float64), dim=0)
    v2[:, :, 6] += 1.0
    moved, _ = delta_rule(q, k2, v2, beta, chunk_size=4)
    assert torch.equal(moved[:, :, :6], base[:, :, :6])
    assert not torch.allclose(moved[:, :, 6:], base[:, :, 6:])


def test_bad_arguments():
    q, k, v, beta, _ = inputs((1, 1, 4, 4, 4, 4), torch.float64)
    with pytest.raises(ConfigError, match="modes: recurrent, chunk"):
        delta_rule(q, k, v, beta, mode="scan")
    with pytest.raises(ShapeError, match="beta must have shape"):
        delta_rule(q, k, v, beta[..., :3])
    with pytest.raises(ShapeError, match="initial_state"):
        linear_attention(q, k, v, initial_state=torch.zeros(1, 1, 4, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match="expected q, k"):
        linear_attention(q[0], k[0], v[0])
