"""Shared fixtures of the kernel tests: seeded inputs, relative errors, outputs with gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# the project's bar for a fast form against its reference (outputs, states, gradients)
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
DTYPES = [torch.float64, torch.float32]
# (B, H, L, D_k, D_v, chunk): L in {1, 7, 16, 33, 70}; chunks that divide L (16/16, 16/8, 70/7) and that
# do not (7/4, 33/8, 70/16), one chunk longer than the sequence (7/64), length 1
CASES = [
    (1, 1, 1, 4, 3, 4),
    (2, 3, 7, 5, 4, 4),
    (1, 1, 7, 4, 4, 64),
    (1, 2, 16, 6, 6, 16),
    (1, 2, 16, 4, 5, 8),
    (2, 1, 33, 5, 7, 8),
    (1, 1, 70, 4, 4, 16),
    (1, 1, 70, 3, 5, 7),
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make_inputs(B, H, L, Dk, Dv, dtype, *, seed=0, n_h=None, gated=False, state=False):
    """q (B, H, L, D_k), unit keys, values, beta in (0.05, 1.95) (both signs of the eigenvalue 1 - beta),
    log decay g in (-1.5, 0], initial state; with n_h, k/v/beta get a Householder axis after L."""
    g = torch.Generator().manual_seed(seed)
    steps = () if n_h is None else (n_h,)
    q = torch.randn(B, H, L, Dk, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(B, H, L, *steps, Dk, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(B, H, L, *steps, Dv, generator=g, dtype=dtype)
    beta = torch.rand(B, H, L, *steps, generator=g, dtype=dtype) * 1.9 + 0.05
    out = {"q": q, "k": k, "v": v, "beta": beta}
    if gated:
        out["g"] = -1.5 * torch.rand(B, H, L, generator=g, dtype=dtype)
    if state:
        out["initial_state"] = torch.randn(B, H, Dk, Dv, generator=g, dtype=dtype)
    return out


def outputs_and_grads(fn, tensors: dict, seed: int = 99):
    """Run fn(**tensors) -> (out, state); backpropagate a random dense cotangent of both.

    Returns out, state and the gradient of every input, keyed like ``tensors``."""
    leaves = {name: t.detach().clone().requires_grad_(True) for name, t in tensors.items()}
    out, state = fn(**leaves)
    g = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + \
        (state * torch.randn(state.shape, generator=g, dtype=state.dtype)).sum()
    loss.backward()
    return out.detach(), state.detach(), {name: t.grad for name, t in leaves.items()}


def assert_forms_agree(fn, tensors: dict, dtype, fast: str = "chunk") -> None:
    """fn(mode=..., **tensors): the `fast` mode and recurrent agree on output, final state and every gradient."""
    o_r, s_r, g_r = outputs_and_grads(lambda **t: fn(mode="recurrent", **t), tensors)
    o_c, s_c, g_c = outputs_and_grads(lambda **t: fn(mode=fast, **t), tensors)
    tol = TOL[dtype]
    assert o_c.dtype == dtype and s_c.dtype == dtype
    assert o_c.shape == o_r.shape and s_c.shape == s_r.shape
    assert rel_err(o_c, o_r) <= tol, f"output: {rel_err(o_c, o_r):.2e}"
    assert rel_err(s_c, s_r) <= tol, f"final state: {rel_err(s_c, s_r):.2e}"
    assert set(g_c) == set(tensors)
    for name in tensors:
        assert g_c[name] is not None and g_r[name] is not None, name
        assert rel_err(g_c[name], g_r[name]) <= tol, f"grad of {name}: {rel_err(g_c[name], g_r[name]):.2e}"


def transition_matrix(step, Dk: int, dtype=torch.float64) -> torch.Tensor:
    """The linear map M_{t-1} -> M_t of one token with zero values, read off the kernel itself.

    ``step(initial_state)`` runs the kernel on one token with v = 0; with M_0 = I (D_v = D_k) the
    final state is A I = A."""
    eye = torch.eye(Dk, dtype=dtype).expand(1, 1, Dk, Dk)
    _, state = step(eye)
    return state[0, 0]
