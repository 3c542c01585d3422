"""Why scaled dot-product attention divides by sqrt(d_k), measured.

Paper: Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762, Section 3.2.1 and its
footnote 4: "assume that the components of q and k are independent random variables with mean 0
and variance 1. Then their dot product, ``q · k = Σ_{i=1}^{d_k} q_i k_i``, has mean 0 and variance
``d_k``", so for large ``d_k`` the logits grow and push the softmax "into regions where it has
extremely small gradients"; ``Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V`` counters this.

The measurement draws ``n`` pairs ``q, k ~ N(0, I_{d_k})`` (float64) for each ``d_k`` in ``dims``
and returns ``error = max_{d_k} max(|mean(q·k)| / sqrt(d_k), |var(q·k) / d_k − 1|)``: zero up to
sampling noise of order ``sqrt(2/n)`` if the footnote's moments hold. It also returns the softmax
saturation the scaling prevents: for one query against ``keys`` random keys, the mean Frobenius
norm of the softmax Jacobian ``diag(p) − p pᵀ`` with unscaled logits ``q·k`` over that with scaled
logits ``q·k / sqrt(d_k)``, at the largest ``d_k`` (``jacobian_ratio``; below 1 when unscaled
logits saturate the softmax), and the same ratio at the smallest ``d_k``.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


def softmax_jacobian_norm(logits: torch.Tensor) -> torch.Tensor:
    """‖diag(p) − p pᵀ‖_F of ``p = softmax(logits)`` along the last axis, one per row."""
    p = logits.softmax(-1)
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    return jac.flatten(-2).norm(dim=-1)


@register_measure("attention_dot_product_scale", metric="error",
                  paper=Paper("Attention Is All You Need", 2017, "1706.03762"))
def attention_dot_product_scale(seed: int, *, dims: tuple[int, ...] = (16, 64, 256, 1024), n: int = 50_000,
                                keys: int = 32, queries: int = 512) -> dict[str, float]:
    dims = tuple(int(d) for d in dims)
    if not dims or min(dims) < 1 or n < 2 or keys < 2 or queries < 1:
        raise ConfigError(f"attention_dot_product_scale: need dims >= 1 (at least one), n >= 2, keys >= 2, "
                          f"queries >= 1; got dims={list(dims)}, n={n}, keys={keys}, queries={queries}")
    g = torch.Generator().manual_seed(seed)
    f64 = {"generator": g, "dtype": torch.float64}
    out: dict[str, float] = {}
    errors = []
    for d in dims:
        dot = (torch.randn(n, d, **f64) * torch.randn(n, d, **f64)).sum(-1)
        mean_err, var_err = abs(dot.mean().item()) / math.sqrt(d), abs(dot.var().item() / d - 1)
        errors.append(max(mean_err, var_err))
        out[f"var_over_dk_{d}"] = dot.var().item() / d
        q, k = torch.randn(queries, 1, d, **f64), torch.randn(queries, keys, d, **f64)
        logits = (q * k).sum(-1)
        out[f"jacobian_ratio_{d}"] = (softmax_jacobian_norm(logits).mean()
                                      / softmax_jacobian_norm(logits / math.sqrt(d)).mean()).item()
    out["error"] = max(errors)
    out["jacobian_ratio"] = out[f"jacobian_ratio_{max(dims)}"]
    return out
