"""Collapsed query-key attention computes the same map as separate W^Q, W^K, with one d x d matrix.

Paper: Bermeitinger, Hrycej, Pavone, Kath, Handschuh, "Reducing the Transformer Architecture to a
Minimum", 2024, arXiv:2410.13732: "Under some conditions, query and key matrices can be collapsed
into a single matrix of the same size": the score ``(x_t W^Q)(x_s W^K)^T = x_t^T (W^Q W^{K T}) x_s``
depends on ``W^Q, W^K`` through their product only, a d x d matrix (the size of ``W^Q`` when one
head spans the width); "a possible symmetric definition requires only half of the parameters".

Per seed: one-head causal attention of width ``d`` drawn from a ``torch.Generator`` (d in
``[min_width, max_width]``), the collapsed block with ``W = W^Q W^{K T}`` and the same ``W^V, W^O``,
a random input; float64::

    error = ||y_collapsed - y_separate|| / ||y_separate||

also reported: ``qk_params_ratio`` = collapsed / separate query-key parameters (1/2: one d x d
matrix instead of two) and ``symmetric_ratio`` = symmetric / collapsed ((d+1) / 2d).
"""
from __future__ import annotations

import torch

from ...blocks.mixers.attention import CausalSelfAttention
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure

PAPER = Paper("Reducing the Transformer Architecture to a Minimum", 2024, "2410.13732")


@register_measure("collapsed_qk_equals_separate", metric="error", paper=PAPER)
def collapsed_qk_equals_separate(seed: int, *, min_width: int = 8, max_width: int = 64,
                                 length: int = 32) -> dict[str, float]:
    if not 1 <= int(min_width) <= int(max_width) or int(length) < 1:
        raise ConfigError(f"collapsed_qk_equals_separate: need 1 <= min_width <= max_width and length >= 1; "
                          f"got {min_width}, {max_width}, {length}")
    g = torch.Generator().manual_seed(seed)
    d = int(torch.randint(int(min_width), int(max_width) + 1, (1,), generator=g))
    with torch.random.fork_rng(devices=[]):  # the blocks' own init must not move the global RNG
        sep = CausalSelfAttention(d, n_heads=1, dtype=torch.float64)
        col = CausalSelfAttention(d, n_heads=1, qk="collapsed", dtype=torch.float64)
        sym = CausalSelfAttention(d, n_heads=1, qk="symmetric", dtype=torch.float64)
    with torch.no_grad():
        for p in sep.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / d ** 0.5)
        Wq, Wk, Wv = sep.w_qkv.weight.split(d)  # rows: y = x W^T
        col.w_qk[0] = Wq.T @ Wk
        col.w_qkv.weight.copy_(Wv)
        col.w_o.weight.copy_(sep.w_o.weight)
        x = torch.randn(2, int(length), d, generator=g, dtype=torch.float64)
        y_sep, y_col = sep(x, "reference"), col(x, "reference")
    return {"error": ((y_col - y_sep).norm() / y_sep.norm()).item(), "width": float(d),
            "qk_params_ratio": col.w_qk.numel() / (2 * d * d), "symmetric_ratio": sym.w_qk.numel() / col.w_qk.numel()}
