"""Delta rule and linear attention: chunked forms against their token-by-token references (outputs,
final states, gradients of every input), state carried across calls, causality, the transition's
spectrum, and the shared UT-transform plumbing."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from layerlab.errors import ConfigError, ShapeError
from layerlab.kernels import delta_rule, linear_attention
from layerlab.kernels._chunks import _unit_lower_inverse, ut_solve

from .helpers import CASES, DTYPES, assert_forms_agree, make_inputs, transition_matrix


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("with_state", [False, True])
def test_delta_rule_chunk_matches_recurrent(case, dtype, with_state):
    *shape, C = case
    tensors = make_inputs(*shape, dtype, state=with_state)
    assert_forms_agree(lambda mode, **t: delta_rule(**t, mode=mode, chunk_size=C), tensors, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_linear_attention_chunk_matches_recurrent(case, dtype):
    *shape, C = case
    tensors = make_inputs(*shape, dtype, state=True)
    del tensors["beta"]
    assert_forms_agree(lambda mode, **t: linear_attention(**t, mode=mode, chunk_size=C), tensors, dtype)


def test_linear_attention_equals_masked_attention_without_softmax():
    t = make_inputs(2, 2, 9, 4, 3, torch.float64)
    out, state = linear_attention(t["q"], t["k"], t["v"], mode="recurrent")
    scores = (t["q"] @ t["k"].transpose(-1, -2)).tril()
    assert torch.allclose(out, scores @ t["v"], atol=1e-12)
    assert torch.allclose(state, t["k"].transpose(-1, -2) @ t["v"], atol=1e-12)


def test_delta_rule_with_beta_one_stores_the_last_value_of_a_key():
    """With beta = 1 and a unit key written twice, reading that key returns the second value."""
    Dk, Dv = 4, 3
    key = F.normalize(torch.randn(Dk, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), dim=0)
    k = key.expand(1, 1, 2, Dk).contiguous()
    v = torch.randn(1, 1, 2, Dv, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    beta = torch.ones(1, 1, 2, dtype=torch.float64)
    _, M = delta_rule(k, k, v, beta, mode="chunk", chunk_size=2)
    assert torch.allclose(M[0, 0].T @ key, v[0, 0, 1], atol=1e-12)
    _, M_la = linear_attention(k, k, v, mode="chunk", chunk_size=2)  # additive memory mixes both
    assert not torch.allclose(M_la[0, 0].T @ key, v[0, 0, 1], atol=1e-3)


@pytest.mark.parametrize("kernel", ["delta_rule", "linear_attention"])
def test_state_carries_across_calls(kernel):
    """Two calls, the second starting from the first's final state, equal one call over the whole."""
    t = make_inputs(1, 2, 23, 4, 5, torch.float64)
    extra = (t["beta"],) if kernel == "delta_rule" else ()
    fn = delta_rule if kernel == "delta_rule" else linear_attention

    def call(lo, hi, **kw):
        return fn(t["q"][:, :, lo:hi], t["k"][:, :, lo:hi], t["v"][:, :, lo:hi],
                  *(x[:, :, lo:hi] for x in extra), **kw)

    full, s_full = call(0, 23, mode="chunk", chunk_size=4)
    first, s1 = call(0, 10, mode="chunk", chunk_size=4)  # 10 is not a multiple of the chunk
    second, s2 = call(10, 23, mode="chunk", chunk_size=8, initial_state=s1)
    assert torch.allclose(torch.cat([first, second], dim=2), full, atol=1e-12)
    assert torch.allclose(s2, s_full, atol=1e-12)
    second_r, s2_r = call(10, 23, mode="recurrent", initial_state=s1)
    assert torch.allclose(second_r, second, atol=1e-12) and torch.allclose(s2_r, s_full, atol=1e-12)


@pytest.mark.parametrize("kernel", ["delta_rule", "linear_attention"])
def test_causality(kernel):
    """Changing token 6 (mid-chunk) leaves outputs 0..5 bit-identical and changes output 6 on."""
    t = make_inputs(1, 1, 10, 4, 4, torch.float64)
    fn = (lambda q, k, v: delta_rule(q, k, v, t["beta"], chunk_size=4)) if kernel == "delta_rule" \
        else (lambda q, k, v: linear_attention(q, k, v, chunk_size=4))
    base, _ = fn(t["q"], t["k"], t["v"])
    k2, v2 = t["k"].clone(), t["v"].clone()
    k2[:, :, 6] = F.normalize(torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(5)), dim=0)
    v2[:, :, 6] += 1.0
    moved, _ = fn(t["q"], k2, v2)
    assert torch.equal(moved[:, :, :6], base[:, :, :6])
    assert (moved[:, :, 6:] - base[:, :, 6:]).abs().amax(-1).min() > 1e-6  # every later output moves


def test_delta_rule_transition_eigenvalues():
    """Unit k, beta in (0, 2): A = I - beta k k^T has eigenvalues 1 (D_k - 1 times) and 1 - beta, all in
    [-1, 1]; beta = 2 makes A a reflection (orthogonal, A k = -k). A is read off the kernel."""
    Dk = 5
    gen = torch.Generator().manual_seed(3)
    zeros = torch.zeros(1, 1, 1, Dk, dtype=torch.float64)
    for b in [0.01, 0.7, 1.0, 1.3, 1.99, 2.0]:
        k = F.normalize(torch.randn(1, 1, 1, Dk, dtype=torch.float64, generator=gen), dim=-1)
        beta = torch.full((1, 1, 1), b, dtype=torch.float64)
        A = transition_matrix(lambda s0, k=k, beta=beta: delta_rule(zeros, k, zeros, beta, initial_state=s0,
                                                                    chunk_size=4), Dk)
        assert torch.allclose(A, torch.eye(Dk, dtype=torch.float64) - b * k[0, 0, 0, :, None] * k[0, 0, 0], atol=1e-14)
        eig = torch.linalg.eigvalsh(A)
        assert eig.min() >= -1 - 1e-12 and eig.max() <= 1 + 1e-12
        assert abs(eig[0].item() - (1 - b)) < 1e-12 and torch.allclose(eig[1:], torch.ones(Dk - 1, dtype=torch.float64))
        if b == 2.0:
            assert torch.allclose(A.T @ A, torch.eye(Dk, dtype=torch.float64), atol=1e-12)
            assert torch.allclose(A @ k[0, 0, 0], -k[0, 0, 0], atol=1e-12)
    # beta outside [0, 2] leaves [-1, 1]: the claim's bound is tight
    k = F.normalize(torch.randn(1, 1, 1, Dk, dtype=torch.float64, generator=gen), dim=-1)
    A = transition_matrix(lambda s0: delta_rule(zeros, k, zeros, torch.full((1, 1, 1), 2.2, dtype=torch.float64),
                                                initial_state=s0), Dk)
    assert torch.linalg.eigvalsh(A).min() < -1.1


@pytest.mark.parametrize("C", [1, 5, 8, 12, 64])
def test_unit_lower_inverse_matches_a_triangular_solve(C):
    """The doubling inverse (any C, padded to a power of two inside) against LAPACK, including badly
    scaled rows (beta near 2, nearly parallel keys)."""
    gen = torch.Generator().manual_seed(C)
    base = torch.randn(1, 1, 6, dtype=torch.float64, generator=gen)
    k = F.normalize(base + 0.3 * torch.randn(3, 2, C, 6, dtype=torch.float64, generator=gen), dim=-1)
    N = (1.99 * k @ k.transpose(-1, -2)).tril(-1)
    eye = torch.eye(C, dtype=torch.float64)
    expected = torch.linalg.solve_triangular(eye + N, eye.expand_as(N), upper=False, unitriangular=True)
    got = _unit_lower_inverse(N)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-12
    assert torch.equal(got.triu(1), torch.zeros_like(got)) and torch.equal(got.diagonal(dim1=-2, dim2=-1),
                                                                           torch.ones(3, 2, C, dtype=torch.float64))


def test_ut_solve_gradients_and_second_order():
    """The custom backward of (I + N)^{-1} R (no solve in it) passes gradcheck and gradgradcheck."""
    gen = torch.Generator().manual_seed(0)
    N = (0.5 * torch.randn(2, 5, 5, dtype=torch.float64, generator=gen)).tril(-1).requires_grad_()
    R1 = torch.randn(2, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    R2 = torch.randn(2, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(N, R1, R2):
        return ut_solve(N.tril(-1), R1, R2)

    assert gradcheck(fn, (N, R1, R2))
    assert gradgradcheck(fn, (N, R1, R2))


@pytest.mark.parametrize("kernel", ["delta_rule", "linear_attention"])
def test_gradcheck_chunk_form(kernel):
    """float64 gradcheck and gradgradcheck (second order runs through the custom autograd Functions)."""
    t = make_inputs(1, 2, 6, 3, 2, torch.float64, state=True)
    if kernel == "delta_rule":
        names = ["q", "k", "v", "beta", "initial_state"]

        def fn(q, k, v, beta, initial_state):
            return delta_rule(q, k, v, beta, chunk_size=4, initial_state=initial_state)
    else:
        names = ["q", "k", "v", "initial_state"]

        def fn(q, k, v, initial_state):
            return linear_attention(q, k, v, chunk_size=4, initial_state=initial_state)
    args = tuple(t[n].clone().requires_grad_() for n in names)
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def test_bad_arguments():
    t = make_inputs(1, 1, 4, 4, 4, torch.float64)
    q, k, v, beta = t["q"], t["k"], t["v"], t["beta"]
    with pytest.raises(ConfigError, match="modes: recurrent, chunk"):
        delta_rule(q, k, v, beta, mode="scan")
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
            delta_rule(q, k, v, beta, chunk_size=bad)
    with pytest.raises(ShapeError, match="beta must have shape"):
        delta_rule(q, k, v, beta[..., :3])
    with pytest.raises(ShapeError, match="initial_state"):
        linear_attention(q, k, v, initial_state=torch.zeros(1, 1, 4, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match="expected q, k"):
        linear_attention(q[0], k[0], v[0])
