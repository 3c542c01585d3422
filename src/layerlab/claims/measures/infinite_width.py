r"""The empirical NTK of a deep ReLU network at initialization against its infinite-width limit.

Paper: Jacot, Gabriel & Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural
Networks", 2018, arXiv:1806.07572, Theorem 1: in the NTK parameterization, as the widths of the
hidden layers grow, the NTK ``Θ(x, x') = Σ_p ∂_p f(x) ∂_p f(x')`` at initialization converges in
probability to a deterministic kernel given by the recursion
``Θ^{(L+1)} = Θ^{(L)} Σ̇^{(L+1)} + Σ^{(L+1)}`` (``lens.theory.infinite_width.ntk``).

The measurement draws ``lens.theory.infinite_width.FullyConnected`` (ReLU, with biases) at each
width, computes its empirical NTK on ``n_inputs`` points uniform on the unit sphere
(``lens.ntk.empirical``, NTK-vector products so that the Jacobian of a wide network is never
stored) and the relative Frobenius error ``‖Θ_m − Θ_∞‖_F / ‖Θ_∞‖_F``. ``error`` is the error at the
widest width; ``slope`` the log-log slope of the error against the width (the central limit
theorem gives ``−1/2``).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import ntk
from ...lens.theory import infinite_width
from ...registry import Paper
from . import register_measure
from .ntk_width import loglog_slope


@register_measure("ntk_infinite_width", metric="error",
                  paper=Paper("Neural Tangent Kernel: Convergence and Generalization in Neural Networks",
                              2018, "1806.07572"))
def ntk_infinite_width(seed: int, *, widths: tuple[int, ...] | list[int] = (128, 512, 2048), depth: int = 4,
                       in_features: int = 8, n_inputs: int = 16, w_std: float = math.sqrt(2.0),
                       b_std: float = 0.1) -> dict[str, float]:
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1 or len(set(widths)) != len(widths):
        raise ConfigError(f"ntk_infinite_width: need at least two distinct widths >= 1, got {widths}")
    if depth < 2 or n_inputs < 2 or in_features < 1:
        raise ConfigError(f"ntk_infinite_width: need depth >= 2 (a hidden layer), n_inputs >= 2, in_features >= 1; "
                          f"got {depth}, {n_inputs}, {in_features}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_inputs, in_features, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    opts = dict(depth=depth, activation="relu", w_std=w_std, b_std=b_std)
    limit = infinite_width.ntk(x, **opts)
    out: dict[str, float] = {}
    errors = []
    for m in sorted(widths):
        net = infinite_width.FullyConnected(in_features, m, dtype=torch.float64,
                                            generator=torch.Generator().manual_seed(seed * 1_000_003 + m), **opts)
        k = ntk.empirical(net, x, method="ntvp", output="trace", chunk_size=4)
        err = float((k - limit).norm() / limit.norm())
        errors.append(err)
        out[f"error@{m}"] = err
    out["slope"] = loglog_slope(sorted(widths), errors)
    out["error"] = errors[-1]
    return out
