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
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from ._chunks import causal_mask, check_mode, check_qkv, to_chunks, zero_state


def delta_rule_recurrent(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                         initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference form: the recurrence, token by token."""
    M = zero_state(q, v) if initial_state is None else initial_state
    outs = []
    for q_t, k_t, v_t, b_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2)):
        v_old = (k_t[..., :, None] * M).sum(-2)  # M^T k_t
        u_t = b_t[..., None] * (v_t - v_old)
        M = M + k_t[..., :, None] * u_t[..., None, :]
        outs.append((q_t[..., :, None] * M).sum(-2))
    return torch.stack(outs, dim=2), M


def delta_rule_chunk(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, chunk_size: int = 64,
                     initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fast form: the UT transform inside each chunk, the state carried across chunks.

    Within a chunk (K, V, Q of C rows, state M at its start) the pseudo-values U solve
    ``U = diag(beta) (V - K M) - diag(beta) tril(K K^T, -1) U``, i.e.
    ``U = T (V - K M)`` with ``T = (I + diag(beta) tril(K K^T, -1))^{-1} diag(beta)``
    (a unit lower-triangular solve). Then ``O = Q M + tril(Q K^T) U`` and ``M' = M + K^T U``.
    Trades L sequential rank-1 updates for L / C chunk steps of matrix products.
    """
    L = q.shape[2]
    Qc, Kc, Vc = (to_chunks(x, chunk_size) for x in (q, k, v))
    Bc = to_chunks(beta, chunk_size)  # padded positions have beta = 0 and k = 0: no update
    M = zero_state(q, v) if initial_state is None else initial_state
    strict = causal_mask(chunk_size, q.device, strict=True)
    inclusive = causal_mask(chunk_size, q.device, strict=False)
    eye = torch.eye(chunk_size, dtype=q.dtype, device=q.device)
    # every chunk's T at once: it does not depend on the state
    KKt = (Kc @ Kc.transpose(-1, -2)).masked_fill(~strict, 0.0)
    A = eye + Bc[..., :, None] * KKt
    T = torch.linalg.solve_triangular(A, torch.diag_embed(Bc), upper=False, unitriangular=True)
    W, U0 = T @ Kc, T @ Vc  # U = U0 - W M
    QKt = (Qc @ Kc.transpose(-1, -2)).masked_fill(~inclusive, 0.0)
    outs = []
    # unbind once: indexing chunk n in the loop would make backward add a full-size zero tensor per chunk
    for Q, K, W_n, U0_n, QKt_n in zip(*(x.unbind(2) for x in (Qc, Kc, W, U0, QKt))):
        U = U0_n - W_n @ M
        outs.append(Q @ M + QKt_n @ U)
        M = M + K.transpose(-1, -2) @ U
    return torch.cat(outs, dim=2)[:, :, :L], M


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *, mode: str = "chunk", chunk_size: int = 64,
               initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The delta rule; returns (output (B, H, L, D_v), final state (B, H, D_k, D_v))."""
    check_mode(mode)
    check_qkv(q, k, v, initial_state)
    if beta.shape != q.shape[:3]:
        raise ShapeError(f"beta must have shape (B, H, L) = {tuple(q.shape[:3])}; got {tuple(beta.shape)}")
    if mode == "recurrent":
        return delta_rule_recurrent(q, k, v, beta, initial_state)
    return delta_rule_chunk(q, k, v, beta, chunk_size, initial_state)
