"""The gated delta rule: the delta rule with a data-dependent scalar decay of the whole memory.

Yang, Kautz & Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta Rule", 2024,
arXiv:2412.06464 (Sec. 3: the gated delta rule and its chunkwise training form). In the paper's
notation, with S_t in R^{D_v x D_k} and alpha_t = exp(g_t) in (0, 1]::

    S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T,     o_t = S_t q_t

Stored as the transpose M_t = S_t^T (D_k x D_v)::

    M_t = alpha_t M_{t-1} + k_t u_t^T,   u_t = beta_t (v_t - alpha_t M_{t-1}^T k_t),   o_t = M_t^T q_t

Chunkwise (``mode="chunk"``): with gamma_r the cumulative log decay from the chunk's start through
row r, the decay-aware mask D[r, i] = exp(gamma_r - gamma_i) (i <= r) multiplies both K K^T in the
UT transform and Q K^T in the output; queries and the keys that read the start state are scaled by
exp(gamma_r), the keys written into the next state by exp(gamma_C - gamma_r); the state is scaled
by exp(gamma_C). See ``delta_rule.delta_rule_chunk`` for the equations. The paper's printed chunk
output writes the binary causal mask M in the intra-chunk term (noted in NVlabs/GatedDeltaNet
issue 15); the recurrence gives the decayed mask (our D, the paper's Gamma), which is what this
kernel computes (tested against the recurrence).

Tensors are per head: q, k (B, H, L, D_k), v (B, H, L, D_v), beta (B, H, L), g (B, H, L) the log
decay (g_t <= 0; the paper's Mamba2-style parametrization g_t = -exp(A) softplus(dt) belongs to
the calling module). With g = 0 this is ``delta_rule`` (to rounding). Pitfall: g > 0 (alpha > 1) is not
rejected, but exp(gamma) then grows along the chunk and can overflow.
"""
from __future__ import annotations

from torch import Tensor

from ._chunks import check_chunk_size, check_mode, check_per_token, check_qkv
from .delta_rule import delta_rule_chunk, delta_rule_fused, delta_rule_recurrent


def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor, *, mode: str = "chunk",
                     chunk_size: int = 64, initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The gated delta rule; returns (output (B, H, L, D_v), final state (B, H, D_k, D_v))."""
    check_mode(mode)
    check_qkv(q, k, v, initial_state)
    check_per_token("beta", beta, q)
    check_per_token("g (the log decay)", g, q)
    if mode == "recurrent":
        return delta_rule_recurrent(q, k, v, beta, initial_state, g=g)
    if mode == "fused":
        return delta_rule_fused(q, k, v, beta, initial_state, g=g)
    chunk_size = check_chunk_size(chunk_size)
    return delta_rule_chunk(q, k, v, beta, chunk_size, initial_state, g=g)
