"""DeltaProduct: chunked (interleaved) form against the recurrence, the recurrence against the paper's
A(x_i) H_{i-1} + B(x_i), n_h = 1 against the (gated) delta rule, the spectrum of the Householder
product (two reflections make a rotation), state carry, causality."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from layerlab.errors import ShapeError
from layerlab.kernels import delta_product, delta_rule, gated_delta_rule

from .helpers import CASES, DTYPES, assert_forms_agree, make_inputs, transition_matrix


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("n_h,gated", [(2, False), (2, True), (3, True)])
def test_chunk_matches_recurrent(case, dtype, n_h, gated):
    """Outputs, final state and the gradients of q, k, v, beta, g and the initial state; chunk_size counts
    sub-steps, rounded down to whole tokens (1 to 32 tokens per chunk here)."""
    *shape, C = case
    tensors = make_inputs(*shape, dtype, n_h=n_h, gated=gated, state=True)
    assert_forms_agree(lambda mode, **t: delta_product(**t, mode=mode, chunk_size=C), tensors, dtype)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
@pytest.mark.parametrize("gated", [False, True])
def test_one_householder_step_is_the_delta_rule_exactly(mode, gated):
    """n_h = 1 runs the same computation as delta_rule / gated_delta_rule: bit-identical results."""
    t = make_inputs(2, 2, 21, 4, 5, torch.float64, n_h=1, gated=gated, state=True)
    out, state = delta_product(**t, mode=mode, chunk_size=8)
    flat = dict(t, k=t["k"][:, :, :, 0], v=t["v"][:, :, :, 0], beta=t["beta"][:, :, :, 0])
    ref = gated_delta_rule(**flat, mode=mode, chunk_size=8) if gated else delta_rule(**flat, mode=mode, chunk_size=8)
    assert torch.equal(out, ref[0]) and torch.equal(state, ref[1])


@pytest.mark.parametrize("gated", [False, True])
def test_recurrence_is_the_papers_product_form(gated):
    """H_i = A(x_i) H_{i-1} + B(x_i), A = exp(g_i) prod_{j=n_h..1} (I - beta_j k_j k_j^T),
    B = sum_j prod_{l=n_h..j+1} (I - beta_l k_l k_l^T) beta_j k_j v_j^T, o_i = H_i^T q_i: the gate
    scales the state once per token, before its Householder steps."""
    B_, H_, L, n_h, Dk, Dv = 1, 1, 5, 3, 4, 2
    t = make_inputs(B_, H_, L, Dk, Dv, torch.float64, n_h=n_h, gated=gated, state=True)
    out, state = delta_product(**t, mode="recurrent")
    eye = torch.eye(Dk, dtype=torch.float64)
    Hs = t["initial_state"][0, 0]
    for i in range(L):
        k, v, b = t["k"][0, 0, i], t["v"][0, 0, i], t["beta"][0, 0, i]
        factors = [eye - b[j] * torch.outer(k[j], k[j]) for j in range(n_h)]
        A = eye * (t["g"][0, 0, i].exp() if gated else 1.0)
        Bm = torch.zeros(Dk, Dv, dtype=torch.float64)
        for j in range(n_h):
            A = factors[j] @ A
            later = eye
            for m in range(j + 1, n_h):
                later = factors[m] @ later
            Bm = Bm + later @ (b[j] * torch.outer(k[j], v[j]))
        Hs = A @ Hs + Bm
        assert torch.allclose(out[0, 0, i], Hs.T @ t["q"][0, 0, i], atol=1e-12)
    assert torch.allclose(state[0, 0], Hs, atol=1e-12)


def test_two_reflections_make_a_rotation():
    """beta = 2 on two unit keys at angle theta: the product of the two reflections is a rotation by 2 theta
    in their plane (eigenvalues exp(+-2i theta)) and the identity elsewhere; orthogonal, det +1. This
    is the mechanism behind DeltaProduct's state tracking. A is read off the kernel (chunk form)."""
    Dk, theta = 5, 0.4
    e1, e2 = torch.eye(Dk, dtype=torch.float64)[:2]
    k = torch.stack([e1, math.cos(theta) * e1 + math.sin(theta) * e2]).expand(1, 1, 1, 2, Dk)
    zeros = torch.zeros(1, 1, 1, Dk, dtype=torch.float64)
    beta = torch.full((1, 1, 1, 2), 2.0, dtype=torch.float64)
    A = transition_matrix(lambda s0: delta_product(zeros, k, zeros[..., None, :].expand(1, 1, 1, 2, Dk), beta,
                                                   initial_state=s0, chunk_size=4), Dk)
    assert torch.allclose(A.T @ A, torch.eye(Dk, dtype=torch.float64), atol=1e-12)
    assert abs(torch.linalg.det(A).item() - 1.0) < 1e-12
    eig = torch.linalg.eigvals(A)
    angles = sorted(abs(a) for a in eig.angle().tolist() if abs(a) > 1e-9)
    assert len(angles) == 2 and all(abs(a - 2 * theta) < 1e-10 for a in angles)
    assert torch.allclose(eig.abs(), torch.ones(Dk, dtype=torch.float64), atol=1e-12)


def test_householder_product_is_a_contraction():
    """Unit keys, beta in [0, 2]: every factor has spectral norm <= 1, hence so has the product (its
    eigenvalues lie in the closed unit disk); beta just above 2 breaks it."""
    Dk, n_h = 4, 3
    gen = torch.Generator().manual_seed(11)
    zeros = torch.zeros(1, 1, 1, Dk, dtype=torch.float64)
    for trial in range(20):
        k = F.normalize(torch.randn(1, 1, 1, n_h, Dk, dtype=torch.float64, generator=gen), dim=-1)
        beta = 2.0 * torch.rand(1, 1, 1, n_h, dtype=torch.float64, generator=gen)
        v0 = torch.zeros(1, 1, 1, n_h, Dk, dtype=torch.float64)
        A = transition_matrix(lambda s0, k=k, v0=v0, beta=beta: delta_product(zeros, k, v0, beta, initial_state=s0), Dk)
        assert torch.linalg.matrix_norm(A, ord=2) <= 1 + 1e-12
        assert torch.linalg.eigvals(A).abs().max() <= 1 + 1e-12
    k = F.normalize(torch.randn(1, 1, 1, 1, Dk, dtype=torch.float64, generator=gen), dim=-1)
    A = transition_matrix(lambda s0: delta_product(zeros, k, v0[..., :1, :], torch.full((1, 1, 1, 1), 2.5,
                                                   dtype=torch.float64), initial_state=s0), Dk)
    assert torch.linalg.matrix_norm(A, ord=2) > 1.4


def test_state_carries_across_calls():
    t = make_inputs(1, 2, 17, 4, 3, torch.float64, n_h=2, gated=True)

    def call(lo, hi, **kw):
        return delta_product(**{n: x[:, :, lo:hi] for n, x in t.items()}, **kw)

    full, s_full = call(0, 17, chunk_size=4)
    first, s1 = call(0, 6, chunk_size=4)
    second, s2 = call(6, 17, chunk_size=3, initial_state=s1)
    assert torch.allclose(torch.cat([first, second], dim=2), full, atol=1e-12)
    assert torch.allclose(s2, s_full, atol=1e-12)


def test_causality():
    t = make_inputs(1, 1, 10, 4, 4, torch.float64, n_h=2, gated=True)
    base, _ = delta_product(**t, chunk_size=4)
    t2 = {n: x.clone() for n, x in t.items()}
    t2["k"][:, :, 6, 1] = F.normalize(torch.ones(4, dtype=torch.float64), dim=0)
    t2["v"][:, :, 6] += 1.0
    t2["g"][:, :, 6] -= 0.5
    moved, _ = delta_product(**t2, chunk_size=4)
    assert torch.equal(moved[:, :, :6], base[:, :, :6])
    assert (moved[:, :, 6:] - base[:, :, 6:]).abs().amax(-1).min() > 1e-6


def test_gradcheck_chunk_form():
    t = make_inputs(1, 1, 5, 3, 2, torch.float64, n_h=2, gated=True, state=True)
    names = ["q", "k", "v", "beta", "g", "initial_state"]
    args = tuple(t[n].clone().requires_grad_() for n in names)

    def fn(q, k, v, beta, g, initial_state):
        return delta_product(q, k, v, beta, g=g, chunk_size=2, initial_state=initial_state)

    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def test_bad_arguments():
    t = make_inputs(1, 1, 4, 4, 4, torch.float64, n_h=2, gated=True)
    with pytest.raises(ShapeError, match="n_h"):
        delta_product(t["q"], t["k"][:, :, :, 0], t["v"], t["beta"])
    with pytest.raises(ShapeError, match=r"beta must have shape \(B, H, L, n_h\)"):
        delta_product(t["q"], t["k"], t["v"], t["beta"][..., 0])
    with pytest.raises(ShapeError, match="log decay"):
        delta_product(t["q"], t["k"], t["v"], t["beta"], g=t["g"][..., :2])
