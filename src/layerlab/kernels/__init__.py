"""Functional recurrences over per-head tensors (B, H, L, D), each in a reference and a fast form.

``mode="recurrent"`` is the token-by-token reference; ``mode="chunk"`` the chunked fast form (the
two agree on outputs, final states and gradients: float64 to 1e-10, float32 to 1e-4, tested).
Every kernel returns ``(output (B, H, L, D_v), final_state (B, H, D_k, D_v))`` and accepts an
``initial_state`` of the same shape, so a sequence can be processed in pieces.

- ``linear_attention(q, k, v)``: S_t = S_{t-1} + k_t v_t^T (Katharopoulos et al., 2020).
- ``delta_rule(q, k, v, beta)``: one online-regression step per token (DeltaNet; Schlag et al.,
  2021; chunked as in Yang et al., 2024).
- ``gated_delta_rule(q, k, v, beta, g)``: the delta rule with a scalar decay exp(g_t) of the
  memory (Gated DeltaNet; Yang, Kautz & Hatamizadeh, 2024).
- ``delta_product(q, k, v, beta, g=None)``: n_h delta-rule steps per token, k (B, H, L, n_h, D_k)
  (DeltaProduct; Siems et al., 2025).

The kernels neither normalize keys nor scale queries; the calling modules do.
"""
from .delta_product import delta_product
from .delta_rule import delta_rule
from .gated_delta_rule import gated_delta_rule
from .linear_attention import linear_attention

__all__ = ["delta_product", "delta_rule", "gated_delta_rule", "linear_attention"]
