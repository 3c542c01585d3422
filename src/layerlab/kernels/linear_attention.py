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

from ._chunks import causal_mask, check_mode, check_qkv, to_chunks, zero_state


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
    """Fast form: within a chunk of C tokens a masked (C x C) product, across chunks the state.

    For a chunk with state S at its start: O = Q S + tril(Q K^T) V and S' = S + K^T V.
    Trades the L sequential steps for L / C, at O(C^2) extra work per chunk.
    """
    L = q.shape[2]
    Qc, Kc, Vc = (to_chunks(x, chunk_size) for x in (q, k, v))
    S = zero_state(q, v) if initial_state is None else initial_state
    mask = causal_mask(chunk_size, q.device, strict=False)
    outs = []
    for Q, K, V in zip(Qc.unbind(2), Kc.unbind(2), Vc.unbind(2)):  # unbind: linear-cost backward
        scores = (Q @ K.transpose(-1, -2)).masked_fill(~mask, 0.0)
        outs.append(Q @ S + scores @ V)
        S = S + K.transpose(-1, -2) @ V
    out = torch.cat(outs, dim=2)[:, :, :L]
    return out, S


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, mode: str = "chunk", chunk_size: int = 64,
                     initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Causal linear attention; returns (output (B, H, L, D_v), final state (B, H, D_k, D_v))."""
    check_mode(mode)
    check_qkv(q, k, v, initial_state)
    if mode == "recurrent":
        return linear_attention_recurrent(q, k, v, initial_state)
    return linear_attention_chunk(q, k, v, chunk_size, initial_state)
