"""DeltaProduct: n_h delta-rule steps per token, a product of generalized Householder transitions.

Siems, Carstensen, Zela, Hutter, Pontil & Grazzi, "DeltaProduct: Improving State-Tracking in
Linear RNNs via Householder Products", 2025, arXiv:2502.10297. Each token i brings n_h keys,
values and step sizes (k_{i,j}, v_{i,j}, beta_{i,j}), j = 1..n_h; in the paper's notation (state
H in R^{D_k x D_v}, the shape the kernels return)::

    H_{i,0} = H_{i-1},
    H_{i,j} = (I - beta_{i,j} k_{i,j} k_{i,j}^T) H_{i,j-1} + beta_{i,j} k_{i,j} v_{i,j}^T,
    H_i = H_{i,n_h},      o_i = H_i^T q_i

so the transition is A(x_i) = prod_{j=n_h..1} (I - beta_{i,j} k_{i,j} k_{i,j}^T), identity plus
rank n_h, read once per token after the last step. Gated DeltaProduct multiplies the transition by
a scalar gate, A(x_i) = exp(g_i) prod_j (...): the state decays once per token, before its n_h
steps (H_{i,0} = exp(g_i) H_{i-1}). With n_h = 1 this is ``delta_rule`` (``gated_delta_rule``
with g).

Tensors: q (B, H, L, D_k), k (B, H, L, n_h, D_k), v (B, H, L, n_h, D_v), beta (B, H, L, n_h),
optional g (B, H, L) the log decay (<= 0). The kernel does not normalize k nor scale q; with
unit-norm keys and beta in [0, 2] every factor has eigenvalues in [-1, 1] (1 with multiplicity
D_k - 1, and 1 - beta), so the product has spectral norm <= 1.

Chunked form: the n_h sub-steps are interleaved into one sequence of L * n_h delta-rule steps
(token i's steps at positions i * n_h + j, its decay g_i on the first, zero on the others) and the
(gated) delta-rule chunk kernel runs on it, with the queries read only at each token's last
sub-step (only those rows of the output products are computed). ``chunk_size`` counts sub-steps,
like the delta-rule kernel's (so the per-chunk cost does not grow with n_h), rounded down to a
multiple of n_h (at least n_h): a chunk holds chunk_size // n_h tokens and a token's steps never
straddle two chunks.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from ._chunks import check_chunk_size, check_mode, check_per_token, zero_state
from .delta_rule import delta_rule_chunk, delta_rule_fused


def _check(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None,
           initial_state: Tensor | None) -> None:
    if q.dim() != 4 or k.dim() != 5 or v.dim() != 5 or k.shape[:3] != q.shape[:3] \
            or k.shape[-1] != q.shape[-1] or v.shape[:4] != k.shape[:4]:
        raise ShapeError(f"expected q (B, H, L, D_k), k (B, H, L, n_h, D_k), v (B, H, L, n_h, D_v); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, L, n_h, Dk = k.shape
    if L < 1 or n_h < 1:
        raise ShapeError(f"sequence length and n_h must be >= 1; got k {tuple(k.shape)}")
    if beta.shape != k.shape[:4]:
        raise ShapeError(f"beta must have shape (B, H, L, n_h) = {tuple(k.shape[:4])}; got {tuple(beta.shape)}")
    if g is not None:
        check_per_token("g (the log decay)", g, q)
    if initial_state is not None and initial_state.shape != (B, H, Dk, v.shape[-1]):
        raise ShapeError(f"initial_state must have shape (B, H, D_k, D_v) = {(B, H, Dk, v.shape[-1])}; "
                         f"got {tuple(initial_state.shape)}")


def delta_product_recurrent(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor | None = None,
                            g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference form: token by token, and inside a token its n_h Householder steps in order."""
    M = zero_state(q, v[..., 0, :]) if initial_state is None else initial_state
    decays = g.exp().unbind(2) if g is not None else [None] * q.shape[2]
    outs = []
    for q_t, k_t, v_t, b_t, a_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2), decays):
        if a_t is not None:
            M = a_t[..., None, None] * M
        for k_j, v_j, b_j in zip(k_t.unbind(2), v_t.unbind(2), b_t.unbind(2)):
            u_j = b_j[..., None] * (v_j - (k_j[..., :, None] * M).sum(-2))
            M = M + k_j[..., :, None] * u_j[..., None, :]
        outs.append((q_t[..., :, None] * M).sum(-2))
    return torch.stack(outs, dim=2), M


def delta_product_chunk(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, chunk_size: int = 64,
                        initial_state: Tensor | None = None, g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fast form: the interleaved sequence of L * n_h steps through the delta-rule chunk kernel."""
    n_h = k.shape[3]
    C = max(n_h, chunk_size - chunk_size % n_h)  # sub-steps per chunk, whole tokens
    return delta_rule_chunk(q, k.flatten(2, 3), v.flatten(2, 3), beta.flatten(2), C,
                            initial_state, g=_token_decay_on_first_step(g, n_h), steps_per_token=n_h)


def _token_decay_on_first_step(g: Tensor | None, n_h: int) -> Tensor | None:
    """(B, H, L) log decays -> (B, H, L * n_h): each token's decay on its first sub-step."""
    if g is None:
        return None
    B, H, L = g.shape
    return torch.cat([g[..., None], g.new_zeros(B, H, L, n_h - 1)], dim=-1).flatten(2)


def delta_product_fused(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor | None = None,
                        g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fused form: the interleaved sequence through the compiled delta-rule kernel."""
    n_h = k.shape[3]
    return delta_rule_fused(q, k.flatten(2, 3), v.flatten(2, 3), beta.flatten(2), initial_state,
                            g=_token_decay_on_first_step(g, n_h), steps_per_token=n_h)


def delta_product(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *, mode: str = "chunk", chunk_size: int = 64,
                  initial_state: Tensor | None = None, g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """DeltaProduct (gated when g is given); returns (output (B, H, L, D_v), final state (B, H, D_k, D_v))."""
    check_mode(mode)
    _check(q, k, v, beta, g, initial_state)
    if mode == "recurrent":
        return delta_product_recurrent(q, k, v, beta, initial_state, g)
    if mode == "fused":
        return delta_product_fused(q, k, v, beta, initial_state, g)
    chunk_size = check_chunk_size(chunk_size)
    return delta_product_chunk(q, k, v, beta, chunk_size, initial_state, g)
