"""Causal linear attention as a recurrence over a matrix state.

Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with Linear
Attention", 2020, arXiv:2006.16236, Eq. 16-20 (without the normalizer, which the mixer adds)::

    S_t = S_{t-1} + k_t v_t^T        (S_t in R^{D_k x D_v})
    o_t = S_t^T q_t = sum_{s <= t} (q_t . k_s) v_s

Tensors are per head: q, k (B, H, L, D_k), v (B, H, L, D_v). The kernel applies no feature map
and no scaling of q: the calling module does.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._chunks import check_chunk_size, check_mode, check_qkv, to_chunks, zero_state


def linear_attention_recurrent(q: Tensor, k: Tensor, v: Tensor,
                               initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference form: the recurrence, token by token."""
    S = zero_state(q, v) if initial_state is None else initial_state
    outs = []
    for q_t, k_t, v_t in zip(q.unbind(2), k.unbind(2), v.unbind(2)):
        S = S + k_t[..., :, None] * v_t[..., None, :]
        outs.append((q_t[..., :, None] * S).sum(-2))
    return torch.stack(outs, dim=2), S


def linear_attention_chunk(q: Tensor, k: Tensor, v: Tensor, chunk_size: int = 64,
                           initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fast form: within a chunk of C tokens a masked (C x C) product, across chunks a prefix sum.

    For chunk n with state S_n at its start: O_n = Q_n S_n + tril(Q_n K_n^T) V_n and
    S_{n+1} = S_n + K_n^T V_n, so the chunks' start states are S_0 plus an exclusive cumulative sum
    of the K_n^T V_n: no sequential loop at all, every product batched over all chunks.
    """
    L = q.shape[2]
    Qc, Kc, Vc = (to_chunks(x, chunk_size) for x in (q, k, v))  # (B, H, N, C, D)
    S0 = zero_state(q, v) if initial_state is None else initial_state
    KV = Kc.transpose(-1, -2) @ Vc  # (B, H, N, D_k, D_v)
    ends = S0[:, :, None] + KV.cumsum(dim=2)  # state after each chunk
    starts = torch.cat([S0[:, :, None], ends[:, :, :-1]], dim=2)
    scores = (Qc @ Kc.transpose(-1, -2)).tril()
    out = Qc @ starts + scores @ Vc
    return out.flatten(2, 3)[:, :, :L], ends[:, :, -1]


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, mode: str = "chunk", chunk_size: int = 64,
                     initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Causal linear attention; returns (output (B, H, L, D_v), final state (B, H, D_k, D_v))."""
    check_mode(mode, ("recurrent", "chunk"))
    check_qkv(q, k, v, initial_state)
    if mode == "recurrent":
        return linear_attention_recurrent(q, k, v, initial_state)
    chunk_size = check_chunk_size(chunk_size)
    return linear_attention_chunk(q, k, v, chunk_size, initial_state)
