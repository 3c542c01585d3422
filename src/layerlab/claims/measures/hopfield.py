"""One-step retrieval of the modern Hopfield network, against the paper's exponential error bound.

Paper: Ramsauer et al., "Hopfield Networks is All You Need", 2020, arXiv:2008.02217, Sec. 2
(Theorem 5, "exponentially small retrieval error"). With stored patterns ``x_1 .. x_N`` (the
columns of ``X``), ``M = max_j ||x_j||``, the separation of pattern ``i``
``Δ_i = x_iᵀx_i - max_{j≠i} x_iᵀx_j`` and the update (Eq. 3) ``f(ξ) = X softmax(β Xᵀ ξ)``, one
update from a query ``ξ`` near ``x_i`` lands within

    ||f(ξ) - x_i|| <= 2 ε M,   ε = (N - 1) exp(-β (Δ_i - 2 M ||ξ - x_i||))

(the paper writes ``max{||ξ - x_i||, ||x_i* - x_i||}`` in the exponent; the bound with
``||ξ - x_i||`` follows from the same two lines: ``f(ξ) - x_i = Σ_{j≠i} p_j (x_j - x_i)``, so
``||f(ξ) - x_i|| <= 2M (1 - p_i)``, and ``1 - p_i <= Σ_{j≠i} p_j / p_i <= ε`` because
``(x_j - x_i)ᵀ ξ <= -Δ_i + 2 M ||ξ - x_i||``).

The measurement stores ``n_patterns`` random patterns of norm ``M`` in ``dim`` dimensions (far
more than the classical ~0.14 d), queries each of ``n_queries`` patterns from a point at distance
``noise`` from it, applies one update through the library's :class:`HopfieldMemory`, and returns
``ratio`` = the largest ``error / (bound + u)`` over the queries whose pattern is well separated in
the paper's sense (``Δ_i - 2 M noise >= 2/(βN) + log(2 (N-1) N β M²) / β``), beside the largest
error relative to ``M`` and how many queries were well separated and retrieved (nearest pattern).
``u = 64 eps M`` (``eps`` of float64) allows for the rounding of one update in float64: the bound
holds in exact arithmetic and can fall below 1e-20 M, where the computed error is rounding.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...blocks.mixers.hopfield import HOPFIELD, HopfieldMemory
from ...errors import ConfigError
from . import register_measure


def separations(X: Tensor) -> Tensor:
    """``Δ_i = x_iᵀx_i - max_{j≠i} x_iᵀx_j`` for every column of ``X`` (d, N), N >= 2."""
    gram = X.transpose(0, 1) @ X
    diag = gram.diagonal().clone()
    gram.fill_diagonal_(-math.inf)
    return diag - gram.max(dim=1).values


def one_step_errors(X: Tensor, xi: Tensor, index: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Errors ``||f(ξ_s) - x_{index_s}||`` after one update and the paper's bounds
    ``2 M (N-1) exp(-β (Δ_i - 2 M ||ξ_s - x_i||))``, for queries ``xi`` (d, S)."""
    N = X.shape[1]
    M = X.norm(dim=0).max()
    target = X[:, index]
    out = HopfieldMemory(X, beta=beta)(xi, n_updates=1)
    err = (out - target).norm(dim=0)
    dist = (xi - target).norm(dim=0)
    bound = 2 * M * (N - 1) * torch.exp(-beta * (separations(X)[index] - 2 * M * dist))
    return err, bound


@register_measure("hopfield_one_step_retrieval", metric="ratio", paper=HOPFIELD)
def hopfield_one_step_retrieval(seed: int, *, dim: int = 32, n_patterns: int = 2000, n_queries: int = 200,
                                norm: float = 10.0, beta: float = 1.0, noise: float = 0.5) -> dict[str, float]:
    if dim < 2 or n_patterns < 2 or not 1 <= n_queries <= n_patterns or norm <= 0 or beta <= 0 or noise < 0:
        raise ConfigError(f"hopfield_one_step_retrieval: need dim >= 2, n_patterns >= 2, 1 <= n_queries <= "
                          f"n_patterns, norm > 0, beta > 0, noise >= 0; got dim={dim}, n_patterns={n_patterns}, "
                          f"n_queries={n_queries}, norm={norm}, beta={beta}, noise={noise}")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(dim, n_patterns, generator=g, dtype=torch.float64)
    X = norm * X / X.norm(dim=0, keepdim=True)
    index = torch.randperm(n_patterns, generator=g)[:n_queries]
    direction = torch.randn(dim, n_queries, generator=g, dtype=torch.float64)
    xi = X[:, index] + noise * direction / direction.norm(dim=0, keepdim=True)

    err, bound = one_step_errors(X, xi, index, beta)
    N, M = n_patterns, norm
    need = 2 / (beta * N) + math.log(2 * (N - 1) * N * beta * M**2) / beta
    separated = separations(X)[index] - 2 * M * noise >= need
    if not bool(separated.any()):
        raise ConfigError(f"hopfield_one_step_retrieval: no queried pattern is well separated at dim={dim}, "
                          f"n_patterns={n_patterns}, norm={norm}, beta={beta}, noise={noise}; "
                          f"raise norm or beta, or lower noise or n_patterns")
    out = HopfieldMemory(X, beta=beta)(xi, n_updates=1)
    nearest = (X.transpose(0, 1) @ out).argmax(dim=0)  # patterns share one norm: largest dot = nearest
    u = 64 * torch.finfo(torch.float64).eps * M
    ratio = (err[separated] / (bound[separated] + u)).max()
    return {"ratio": ratio.item(), "max_rel_error": (err[separated].max() / M).item(),
            "max_bound_rel": (bound[separated].max() / M).item(),
            "well_separated": float(separated.sum().item()),
            "retrieved": float((nearest == index)[separated].float().mean().item())}
