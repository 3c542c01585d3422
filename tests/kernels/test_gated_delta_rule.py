"""Gated delta rule (Gated DeltaNet): chunked form against the recurrence, the recurrence against the
paper's matrix equation, g = 0 against the plain delta rule, strong decay, state carry, causality."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from layerlab.errors import ShapeError
from layerlab.kernels import delta_rule, gated_delta_rule

from .helpers import (
    CASES,
    DTYPES,
    assert_forms_agree,
    make_inputs,
    rel_err,
    transition_matrix,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("with_state", [False, True])
def test_chunk_matches_recurrent(case, dtype, with_state):
    """Outputs, final state and the gradients of q, k, v, beta, g (and the initial state)."""
    *shape, C = case
    tensors = make_inputs(*shape, dtype, gated=True, state=with_state)
    assert_forms_agree(lambda mode, **t: gated_delta_rule(**t, mode=mode, chunk_size=C), tensors, dtype)


def test_recurrence_is_the_papers_equation():
    """S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T, o_t = S_t q_t, with explicit
    matrices (S in R^{D_v x D_k}); the kernel returns M = S^T."""
    B, H, L, Dk, Dv = 1, 1, 6, 4, 3
    t = make_inputs(B, H, L, Dk, Dv, torch.float64, gated=True, state=True)
    out, M = gated_delta_rule(**t, mode="recurrent")
    S = t["initial_state"][0, 0].T
    eye = torch.eye(Dk, dtype=torch.float64)
    for i in range(L):
        k, v, q = t["k"][0, 0, i], t["v"][0, 0, i], t["q"][0, 0, i]
        alpha, beta = t["g"][0, 0, i].exp(), t["beta"][0, 0, i]
        S = S @ (alpha * (eye - beta * torch.outer(k, k))) + beta * torch.outer(v, k)
        assert torch.allclose(out[0, 0, i], S @ q, atol=1e-12)
    assert torch.allclose(M[0, 0], S.T, atol=1e-12)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_zero_log_decay_is_the_delta_rule(mode):
    t = make_inputs(2, 2, 19, 4, 5, torch.float64, gated=True, state=True)
    g = torch.zeros_like(t.pop("g"))
    out_g, s_g = gated_delta_rule(g=g, **t, mode=mode, chunk_size=8)
    out, s = delta_rule(**t, mode=mode, chunk_size=8)
    assert rel_err(out_g, out) <= 1e-14 and rel_err(s_g, s) <= 1e-14


def test_decay_forgets():
    """g -> -inf at token 5 erases the memory: outputs from 5 on equal a fresh start at token 5."""
    t = make_inputs(1, 2, 12, 4, 4, torch.float64, gated=True)
    t["g"][:, :, 5] = -200.0
    out, _ = gated_delta_rule(**t, chunk_size=4)
    rest = {name: x[:, :, 5:] for name, x in t.items()}
    fresh, _ = delta_rule(rest["q"], rest["k"], rest["v"], rest["beta"], mode="recurrent")  # alpha_5 = 0
    # after token 5 the decays are the ordinary ones again: compare the first output exactly, the rest
    # against the gated recurrence from a zero state
    assert torch.allclose(out[:, :, 5], fresh[:, :, 0], atol=1e-12)
    rest["g"] = rest["g"].clone()
    rest["g"][:, :, 0] = 0.0
    again, _ = gated_delta_rule(**rest, mode="recurrent")
    assert torch.allclose(out[:, :, 5:], again, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strong_decay_is_finite_and_exact(dtype):
    """Cumulative log decays far below exp's range (-30 per token over a 64-token chunk): the chunk form
    only exponentiates differences gamma_r - gamma_i <= 0, so nothing overflows or turns into NaN."""
    t = make_inputs(1, 2, 40, 4, 4, dtype, gated=True, state=True)
    t["g"] = t["g"] * 20.0 - 10.0
    o_c, s_c = gated_delta_rule(**t, chunk_size=64)
    o_r, s_r = gated_delta_rule(**t, mode="recurrent")
    assert torch.isfinite(o_c).all() and torch.isfinite(s_c).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert rel_err(o_c, o_r) <= tol and rel_err(s_c, s_r) <= tol
    tensors = {n: x for n, x in t.items()}
    assert_forms_agree(lambda mode, **x: gated_delta_rule(**x, mode=mode, chunk_size=16), tensors, dtype)


def test_state_carries_across_calls():
    t = make_inputs(1, 2, 23, 4, 5, torch.float64, gated=True)

    def call(lo, hi, **kw):
        return gated_delta_rule(**{n: x[:, :, lo:hi] for n, x in t.items()}, **kw)

    full, s_full = call(0, 23, chunk_size=4)
    first, s1 = call(0, 10, chunk_size=4)
    second, s2 = call(10, 23, chunk_size=8, initial_state=s1)
    assert torch.allclose(torch.cat([first, second], dim=2), full, atol=1e-12)
    assert torch.allclose(s2, s_full, atol=1e-12)


def test_causality():
    t = make_inputs(1, 1, 10, 4, 4, torch.float64, gated=True)
    base, _ = gated_delta_rule(**t, chunk_size=4)
    t2 = {n: x.clone() for n, x in t.items()}
    t2["k"][:, :, 6] = F.normalize(torch.ones(4, dtype=torch.float64), dim=0)
    t2["v"][:, :, 6] += 1.0
    t2["g"][:, :, 6] -= 0.5
    moved, _ = gated_delta_rule(**t2, chunk_size=4)
    assert torch.equal(moved[:, :, :6], base[:, :, :6])
    assert (moved[:, :, 6:] - base[:, :, 6:]).abs().amax(-1).min() > 1e-6


def test_transition_eigenvalues_are_scaled_by_the_decay():
    """A = alpha (I - beta k k^T): eigenvalues alpha and alpha (1 - beta), inside [-1, 1] for beta in
    [0, 2] and alpha = exp(g) in (0, 1]. Read off the kernel (chunk form)."""
    Dk = 4
    gen = torch.Generator().manual_seed(7)
    zeros = torch.zeros(1, 1, 1, Dk, dtype=torch.float64)
    for b, g in [(0.5, -0.1), (1.9, -0.7), (2.0, 0.0), (2.0, -2.0)]:
        k = F.normalize(torch.randn(1, 1, 1, Dk, dtype=torch.float64, generator=gen), dim=-1)
        beta, logd = (torch.full((1, 1, 1), x, dtype=torch.float64) for x in (b, g))
        A = transition_matrix(lambda s0, k=k, beta=beta, logd=logd: gated_delta_rule(zeros, k, zeros, beta, logd,
                                                                                   initial_state=s0), Dk)
        eig = torch.linalg.eigvalsh(A)
        alpha = torch.tensor(g, dtype=torch.float64).exp()
        expected = torch.sort(torch.stack([alpha * (1 - b)] + [alpha] * (Dk - 1))).values
        assert torch.allclose(eig, expected, atol=1e-12)
        assert eig.abs().max() <= 1 + 1e-12


def test_gradcheck_chunk_form():
    t = make_inputs(1, 2, 6, 3, 2, torch.float64, gated=True, state=True)
    names = ["q", "k", "v", "beta", "g", "initial_state"]
    args = tuple(t[n].clone().requires_grad_() for n in names)

    def fn(q, k, v, beta, g, initial_state):
        return gated_delta_rule(q, k, v, beta, g, chunk_size=4, initial_state=initial_state)

    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def test_bad_log_decay_shape():
    t = make_inputs(1, 1, 4, 4, 4, torch.float64, gated=True)
    t["g"] = t["g"][..., :3]
    with pytest.raises(ShapeError, match="log decay"):
        gated_delta_rule(**t)
