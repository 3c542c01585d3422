"""Causal linear attention is an RNN: its attention-matrix form equals a recurrence of constant state.

Paper: Katharopoulos, Vyas, Pappas & Fleuret, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", 2020, arXiv:2006.16236 (Sec. 3.2, Eq. 4-6; Sec. 3.3, causal
masking, Eq. 8-10; Sec. 3.4, "Transformers are RNNs", Eq. 16-20).

Generalized attention with the kernel ``sim(q, k) = phi(q)^T phi(k)`` and a causal mask is, as an
attention matrix (Eq. 2-3 with ``j <= i``)::

    V'_i = sum_{j <= i} phi(Q_i)^T phi(K_j) V_j  /  sum_{j <= i} phi(Q_i)^T phi(K_j)

and, by associativity, the recurrence of Eq. 18-20::

    s_i = s_{i-1} + phi(K_i) V_i^T,   z_i = z_{i-1} + phi(K_i),   V'_i = phi(Q_i)^T s_i / phi(Q_i)^T z_i

whose state ``(s_i, z_i)`` has ``d_h (d_h + 1)`` numbers per head whatever ``i`` is.

The measurement builds layerlab's ``linear_attention`` mixer (float64, ``eps = 0``: the paper's
equation), computes the attention-matrix form above from the mixer's own projections
(``features``) with an ``L x L`` masked matrix, and compares it with the mixer run token by token
through ``step`` (the RNN) and with its default chunked form. ``error`` is the largest of the two
relative errors (max abs difference over max abs output) and of the relative growth of the RNN's
state between ``L/4`` and ``L`` tokens (0 when the state is constant in length).
"""
from __future__ import annotations

import torch

from ...blocks.mixers.base import state_numel
from ...blocks.mixers.linear_attention import LinearAttention
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


def attention_matrix_form(block: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3 with ``sim = phi(q)^T phi(k)`` and a causal mask, quadratic in L: (B, L, D) -> (B, L, D)."""
    B, L, D = x.shape
    q, k, v = block.features(x)  # (B, h, L, d_h), v with a ones column appended (normalize=True)
    sim = q @ k.transpose(-1, -2)  # (B, h, L, L): phi(Q_i)^T phi(K_j)
    sim = sim * torch.ones(L, L, dtype=torch.bool).tril()
    num = sim @ v[..., :-1]
    den = sim.sum(-1, keepdim=True)
    heads = (num / den).transpose(1, 2).reshape(B, L, D)
    return block.w_o(heads.to(x.dtype))


@register_measure("linear_attention_rnn", metric="error",
                  paper=Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
                              2020, "2006.16236"))
def linear_attention_rnn(seed: int, *, d_model: int = 32, n_heads: int = 4, length: int = 128,
                         batch: int = 4) -> dict[str, float]:
    if d_model < 1 or n_heads < 1 or d_model % n_heads or length < 4 or batch < 1:
        raise ConfigError(f"linear_attention_rnn: need n_heads >= 1 dividing d_model, length >= 4, batch >= 1; "
                          f"got d_model={d_model}, n_heads={n_heads}, length={length}, batch={batch}")
    g = torch.Generator().manual_seed(seed)
    block = LinearAttention(d_model, n_heads=n_heads, eps=0.0, dtype=torch.float64)
    with torch.no_grad():  # the block's own init (std d^-1/2), drawn from this seed's generator
        for linear in (block.w_qkv, block.w_o):
            linear.weight.normal_(0.0, d_model ** -0.5, generator=g)
    x = torch.randn(batch, length, d_model, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y_att = attention_matrix_form(block, x)
        y_chunk = block(x)
        state = block.init_state(batch, dtype=torch.float64)
        outs, sizes = [], {}
        for t in range(length):
            y_t, state = block.step(x[:, t], state)
            outs.append(y_t)
            sizes[t + 1] = state_numel(state)
        y_rnn = torch.stack(outs, dim=1)
    scale = y_att.abs().max().item()
    rnn_err = (y_rnn - y_att).abs().max().item() / scale
    chunk_err = (y_chunk - y_att).abs().max().item() / scale
    growth = sizes[length] / sizes[length // 4] - 1.0
    return {"error": max(rnn_err, chunk_err, abs(growth)), "rnn_error": rnn_err, "chunk_error": chunk_err,
            "state_growth": growth, "state_numel": float(sizes[length])}
