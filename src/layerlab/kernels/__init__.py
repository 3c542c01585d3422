"""Functional recurrences over per-head tensors (B, H, L, D), each in a reference and a fast form.

``mode="recurrent"`` is the token-by-token reference; ``mode="chunk"`` the chunked fast form.
Every kernel returns ``(output, final_state)`` with the state of shape (B, H, D_k, D_v).
"""
from .delta_rule import delta_rule
from .linear_attention import linear_attention

__all__ = ["delta_rule", "linear_attention"]
