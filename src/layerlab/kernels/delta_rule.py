"""The delta rule: a matrix memory written by one step of online regression per token.

Schlag et al., "Linear Transformers Are Secretly Fast Weight Programmers", 2021,
arXiv:2102.11174; chunked training: Yang et al., "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length", 2024, arXiv:2406.06484 (Sec. 3, the WY/UT representation).

In the paper's notation, with S_t in R^{D_v x D_k}::

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,     o_t = S_t q_t

This module stores the transpose M_t = S_t^T in R^{D_k x D_v} (the shape the kernels return)::

    M_t = M_{t-1} + k_t u_t^T,   u_t = beta_t (v_t - M_{t-1}^T k_t),   o_t = M_t^T q_t

Tensors are per head: q, k (B, H, L, D_k), v (B, H, L, D_v), beta (B, H, L). The kernel does not
normalize k nor scale q (the calling module does); beta in (0, 2) keeps the transition's
eigenvalues in [-1, 1] for unit-norm keys.

The forms here also take an optional per-token log decay g (the gated delta rule,
``layerlab.kernels.gated_delta_rule``, documented there); ``g=None`` is the plain delta rule.

Three forms, tested equal: ``delta_rule_recurrent`` (the reference, the equation above token by
token), ``delta_rule_chunk`` (the UT transform in chunks, batched matmuls: PyTorch only, so it runs
on any device and under torch.func), and ``delta_rule_fused``: the recurrence itself in a small
C++/OpenMP kernel (``delta_rule.cpp``) with a hand-written backward. At the heads' sizes of the
arena (D_k = D_v = 12 to 64) the state is a few kB: a token costs two passes over it, so the fused
loop does O(L D_k D_v) work without the chunk form's O(L C D) extra products and the ~30 small
operations per chunk whose overhead dominates at these sizes. It keeps the state entering every
16th sub-step and recomputes the others in its backward. Built on first use, CPU only; elsewhere
(GPU, torch.func transforms, no compiler) the chunk form serves.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ._extensions import LazyExtension, compile_inline, fresh_inputs

from ._chunks import (
    causal_mask,
    check_chunk_size,
    check_mode,
    check_per_token,
    check_qkv,
    to_chunks,
    ut_solve,
    zero_state,
)


def delta_rule_recurrent(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor | None = None,
                         g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference form: the recurrence, token by token (``M <- exp(g_t) M`` first when g is given)."""
    M = zero_state(q, v) if initial_state is None else initial_state
    decays = g.exp().unbind(2) if g is not None else [None] * q.shape[2]
    outs = []
    for q_t, k_t, v_t, b_t, a_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2), decays):
        if a_t is not None:
            M = a_t[..., None, None] * M
        v_old = (k_t[..., :, None] * M).sum(-2)  # M^T k_t
        u_t = b_t[..., None] * (v_t - v_old)
        M = M + k_t[..., :, None] * u_t[..., None, :]
        outs.append((q_t[..., :, None] * M).sum(-2))
    return torch.stack(outs, dim=2), M


class _ChunkLoop(torch.autograd.Function):
    """The state-dependent part of the chunk kernel, chunk by chunk (Z = B * H rows)::

        U_n = U0_n - W_n M_n,   O_n = Qs_n M_n + P_n U_n,   M_{n+1} = a_n M_n + Kd_n^T U_n

    Returns O (Z, N, C_q, D_v), the final state, and the start states and U_n (extra outputs, so
    that the backward, written with differentiable ops on saved inputs and outputs, keeps double
    backward exact). Per chunk: four small products forward, seven backward, on per-chunk slices
    that stay in cache, without autograd bookkeeping per chunk and without concatenating Qs and W
    (a full-size copy each way that cost more than the extra product it saves).
    """

    @staticmethod
    def forward(ctx, Qs, W, U0, Kd, a, M, P):  # type: ignore[override]
        N = W.shape[1]
        starts, Us, Os = [], [], []
        for n in range(N):
            starts.append(M)
            U = torch.baddbmm(U0[:, n], W[:, n], M, alpha=-1)
            Us.append(U)
            Os.append(torch.baddbmm(Qs[:, n] @ M, P[:, n], U))
            M = torch.baddbmm(M if a is None else a[:, n, None, None] * M, Kd[:, n].transpose(-1, -2), U)
        ctx.save_for_backward(Qs, W, Kd, a, P, *starts, *Us)
        ctx.set_materialize_grads(False)
        return (torch.stack(Os, dim=1), M, *starts, *Us)

    @staticmethod
    def backward(ctx, dO, dM, *d_extra):  # type: ignore[override]
        Qs, W, Kd, a, P, *rest = ctx.saved_tensors
        N = W.shape[1]
        starts, Us = rest[:N], rest[N:]
        d_starts, d_Us = d_extra[:N], d_extra[N:]
        dM = torch.zeros_like(starts[0]) if dM is None else dM  # dL/dM_{n+1}
        dO = torch.zeros(*P.shape[:-1], Us[0].shape[-1], dtype=dM.dtype, device=dM.device) if dO is None else dO
        dQs, dWs, dUs, dKds, das, dPs = ([None] * N for _ in range(6))
        for n in reversed(range(N)):
            M_n, U_n, dO_n = starts[n], Us[n], dO[:, n]
            dPs[n] = dO_n @ U_n.transpose(-1, -2)
            dU = torch.baddbmm(Kd[:, n] @ dM, P[:, n].transpose(-1, -2), dO_n)
            if d_Us[n] is not None:
                dU = dU + d_Us[n]
            dUs[n] = dU
            dKds[n] = U_n @ dM.transpose(-1, -2)
            if a is not None:
                das[n] = (M_n * dM).sum((-1, -2))
                dM = a[:, n, None, None] * dM
            if d_starts[n] is not None:
                dM = dM + d_starts[n]
            M_nT = M_n.transpose(-1, -2)
            dQs[n] = dO_n @ M_nT
            dWs[n] = -(dU @ M_nT)
            dM = torch.baddbmm(torch.baddbmm(dM, Qs[:, n].transpose(-1, -2), dO_n),
                               W[:, n].transpose(-1, -2), dU, alpha=-1)
        da = None if a is None else torch.stack(das, dim=1)
        return (torch.stack(dQs, dim=1), torch.stack(dWs, dim=1), torch.stack(dUs, dim=1),
                torch.stack(dKds, dim=1), da, dM, torch.stack(dPs, dim=1))


def delta_rule_chunk(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, chunk_size: int = 64,
                     initial_state: Tensor | None = None, g: Tensor | None = None,
                     steps_per_token: int = 1) -> tuple[Tensor, Tensor]:
    """Fast form: the UT transform inside each chunk, the state carried across chunks.

    Within a chunk (rows r = 1..C of K, V, Q; state M at its start; gamma_r the log decay summed
    from the chunk start through r, all zero without g), the pseudo-values U solve::

        U = diag(beta) (V - diag(e^gamma) K M) - diag(beta) tril(K K^T * D, -1) U,
        D[r, i] = exp(gamma_r - gamma_i) for i <= r, else 0,

    so ``U = U0 - W M`` with ``T = (I + diag(beta) tril(K K^T * D, -1))^{-1}``, ``W = T diag(beta)
    diag(e^gamma) K`` and ``U0 = T diag(beta) V``. Then::

        O  = diag(e^gamma) Q M + (tril(Q K^T) * D) U
        M' = e^{gamma_C} M + (diag(e^{gamma_C - gamma}) K)^T U

    Two passes: everything that does not depend on the state (K K^T and Q K^T with their masks and
    decays, T, W, U0) is computed for all chunks at once in batched products; the sequential loop
    over chunks (``_ChunkLoop``, a custom autograd Function) then does only the state-dependent
    products, three small matmuls per chunk forward and six backward, on per-chunk slices that stay
    in cache. T comes from a doubling inverse of the unit lower-triangular matrix
    (``_chunks.ut_solve``; its backward needs no solve), not a LAPACK triangular solve. Decays enter
    only as ``exp(gamma_r - gamma_i)`` with i < r (masked before the exponential, the diagonal added
    as the constant 1), never as exp of a positive number when g <= 0.

    ``steps_per_token = s > 1`` (DeltaProduct): k, v, beta and g run over L * s sub-steps while q
    has L rows, read after every s-th sub-step; ``chunk_size`` counts sub-steps and is a multiple
    of s. Only the read rows of the output products are computed.
    """
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    C, s = chunk_size, steps_per_token
    Qc = to_chunks(q, C // s).flatten(0, 1)  # (Z, N, C / s, D_k), Z = B * H
    Kc, Vc = (to_chunks(x, C).flatten(0, 1) for x in (k, v))  # (Z, N, C, D)
    Bc = to_chunks(beta, C).flatten(0, 1)[..., None]  # padded positions: beta = 0, k = 0: no update
    read = slice(s - 1, None, s)  # the rows read out
    Kb = Bc * Kc
    KcT = Kc.transpose(-1, -2)
    P, A = Qc @ KcT, Kb @ KcT
    if g is None:
        P = P.tril() if s == 1 else P.masked_fill(~causal_mask(C, q.device, strict=False)[read], 0.0)
        A = A.tril(-1)
        Kw = Kb  # diag(beta) K, through which U sees the chunk's start state
        Kd, Qs, decay = Kc, Qc, None
    else:
        gc = to_chunks(g, C).flatten(0, 1)  # (Z, N, C)
        G = gc.cumsum(-1)  # gamma_r
        # gamma_r - gamma_i for i < r only: the diagonal is the constant 1 (added, not exp(gamma_r -
        # gamma_r), whose two opposite gradients would leave rounding noise in a tiny dL/dg)
        strict = causal_mask(C, q.device, strict=True)
        D = (G[..., :, None] - G[..., None, :]).masked_fill(~strict, float("-inf")).exp()
        eye = torch.eye(C, dtype=D.dtype, device=D.device)
        P = P * (D + eye)[..., read, :]
        A = A * D
        edecay = G.exp()[..., None]
        Kw, Qs = Kb * edecay, Qc * edecay[..., read, :]
        to_end = gc[..., 1:].flip(-1).cumsum(-1).flip(-1)  # gamma_C - gamma_r = sum_{j > r} g_j, r < C
        Kd = Kc * torch.cat([to_end.exp(), torch.ones_like(G[..., :1])], dim=-1)[..., None]
        decay = G[..., -1].exp()  # (Z, N)
    W, U0 = ut_solve(A, Kw, Bc * Vc)
    M0 = (zero_state(q, v) if initial_state is None else initial_state).reshape(B * H, Dk, Dv)
    O, M = _ChunkLoop.apply(Qs, W, U0, Kd, decay, M0, P)[:2]
    return O.view(B, H, -1, Dv)[:, :, :L], M.reshape(B, H, Dk, Dv)


# --- the compiled kernel -------------------------------------------------------------------

SOURCE = Path(__file__).with_name("delta_rule.cpp")
CHECKPOINT = 16  # sub-steps between the states the fused forward keeps for its backward

# ``extension()``: the compiled kernel, built on first use; None where it is switched off or cannot be built.
extension = LazyExtension(
    lambda: compile_inline("delta_rule", SOURCE, ["delta_rule_forward", "delta_rule_backward"], ["-O3", "-fopenmp"]),
    what="the fused delta rule", fallback="chunked PyTorch form")


class _FusedDeltaRule(torch.autograd.Function):
    """Rows z = (batch, head) flattened: q (Z, L, D_k), k (Z, T, D_k), v (Z, T, D_v), beta, g (Z, T)."""

    @staticmethod
    def forward(ctx, q, k, v, beta, g, M0, s):  # type: ignore[override]
        empty = v.new_empty(0)
        o, M, ckpt = extension().delta_rule_forward(q, k, v, beta, empty if g is None else g,
                                                    empty if M0 is None else M0, s, CHECKPOINT)
        ctx.save_for_backward(q, k, v, beta, g, M0, ckpt)
        ctx.s = s
        ctx.set_materialize_grads(False)  # an unused final state (the usual case) costs no zero tensor
        return o, M

    @staticmethod
    def backward(ctx, do, dM):  # type: ignore[override]
        q, k, v, beta, g, M0, ckpt = ctx.saved_tensors
        s = ctx.s
        wanted = ctx.needs_input_grad[:6]
        if do is None:
            do = torch.zeros(q.shape[:2] + v.shape[-1:], dtype=v.dtype, device=v.device)
        if torch.is_grad_enabled():  # create_graph: differentiate the chunk form, keeping its graph
            q, k, v, beta, g, M0 = fresh_inputs(q, k, v, beta, g, M0)
            inputs = [t for t, w in zip((q, k, v, beta, g, M0), wanted) if w]
            o, M = delta_rule_chunk(*(t[:, None] for t in (q, k, v, beta)), max(s, 64 - 64 % s),
                                    None if M0 is None else M0[:, None], g=None if g is None else g[:, None],
                                    steps_per_token=s)
            outputs, cotangents = ((o[:, 0], M[:, 0]), (do, dM)) if dM is not None else ((o[:, 0],), (do,))
            grads = iter(torch.autograd.grad(outputs, inputs, cotangents, create_graph=True, allow_unused=True))
            return (*(next(grads) if w else None for w in wanted), None)
        empty = v.new_empty(0)
        dq, dk, dv, db, dg, dM0 = extension().delta_rule_backward(
            q, k, v, beta, empty if g is None else g, ckpt, do.contiguous(),
            empty if dM is None else dM.contiguous(), s, CHECKPOINT)
        return (dq, dk, dv, db, dg if g is not None else None, dM0 if M0 is not None else None, None)


def fused_serves(*tensors: Tensor | None) -> bool:
    """Whether ``delta_rule_fused`` runs the compiled kernel on these tensors (else the chunk form)."""
    present = [t for t in tensors if t is not None]
    return all(t.dtype in (torch.float32, torch.float64) for t in present) and extension.serves(present)


def delta_rule_fused(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor | None = None,
                     g: Tensor | None = None, steps_per_token: int = 1) -> tuple[Tensor, Tensor]:
    """Fused form: the recurrence in the compiled kernel (module docstring), where it serves
    (``fused_serves``); else ``delta_rule_chunk`` with 64-token chunks. ``steps_per_token`` as in
    ``delta_rule_chunk``: k, v, beta, g over L * s sub-steps, q read after every s-th."""
    s = int(steps_per_token)
    if not fused_serves(q, k, v, beta, g, initial_state):
        return delta_rule_chunk(q, k, v, beta, max(s, 64 - 64 % s), initial_state, g=g, steps_per_token=s)
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    rows = (lambda t: None if t is None else t.reshape(B * H, *t.shape[2:]).contiguous())
    o, M = _FusedDeltaRule.apply(rows(q), rows(k), rows(v), rows(beta), rows(g), rows(initial_state), s)
    return o.view(B, H, L, Dv), M.view(B, H, Dk, Dv)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *, mode: str = "chunk", chunk_size: int = 64,
               initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The delta rule; returns (output (B, H, L, D_v), final state (B, H, D_k, D_v)).

    ``mode``: "recurrent" (reference), "chunk" (``chunk_size`` tokens per chunk) or "fused"."""
    check_mode(mode)
    check_qkv(q, k, v, initial_state)
    check_per_token("beta", beta, q)
    if mode == "recurrent":
        return delta_rule_recurrent(q, k, v, beta, initial_state)
    if mode == "fused":
        return delta_rule_fused(q, k, v, beta, initial_state)
    chunk_size = check_chunk_size(chunk_size)
    return delta_rule_chunk(q, k, v, beta, chunk_size, initial_state)
