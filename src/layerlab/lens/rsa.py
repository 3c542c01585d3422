r"""Representational similarity analysis: dissimilarity matrices of condition representations and
their comparison.

Used by Alleman, Lindsey & Fusi, "Task structure and nonlinearity jointly determine learned
representational geometry", ICLR 2024, arXiv:2401.13558, beside kernel alignment (linear CKA,
``lens.similarity.cka``), to compare the geometry of a hidden layer with that of the inputs and of
the targets; the method is Kriegeskorte, Mur & Bandettini, "Representational similarity analysis",
Front. Syst. Neurosci. 2008. For ``C`` conditions with representations ``x_1 .. x_C``:

    RDM_euclidean[i, j]   = ||x_i - x_j||_2
    RDM_correlation[i, j] = 1 - pearson(x_i, x_j)          (across the units of the representation)

and two RDMs are compared by the Pearson or Spearman correlation of their upper triangles
(``i < j``); Spearman is Pearson on ranks, ties given their average rank.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["rdm", "rdm_similarity", "average_ranks"]

METRICS = ("euclidean", "correlation")
METHODS = ("pearson", "spearman")


def rdm(x: Tensor, metric: str = "euclidean") -> Tensor:
    """The ``(C, C)`` dissimilarity matrix of the rows of ``x`` (C conditions, ...), float64."""
    if metric not in METRICS:
        raise ConfigError(f"unknown RDM metric {metric!r}; choose one of {METRICS}")
    if x.dim() < 2 or x.shape[0] < 2:
        raise ShapeError(f"rdm needs (C, ...) with C >= 2 conditions, got {tuple(x.shape)}")
    f = x.detach().double().reshape(x.shape[0], -1)
    if metric == "euclidean":
        sq = f.pow(2).sum(1)
        return (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0).sqrt().fill_diagonal_(0.0)
    c = f - f.mean(1, keepdim=True)
    n = c.norm(dim=1)
    if bool((n == 0).any()):
        raise ConfigError("rdm(metric='correlation'): a condition's representation is constant across units; "
                          "use metric='euclidean'")
    u = c / n[:, None]
    return (1.0 - u @ u.T).fill_diagonal_(0.0)


def average_ranks(v: Tensor) -> Tensor:
    """Ranks 1..n of the entries of ``v`` (1-D), ties given the mean of the ranks they span."""
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    ranks = torch.empty(len(v), dtype=torch.float64)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rdm_similarity(a: Tensor, b: Tensor, method: str = "spearman") -> float:
    """Correlation (``method``) between the upper triangles of two RDMs of the same conditions."""
    if method not in METHODS:
        raise ConfigError(f"unknown RDM comparison {method!r}; choose one of {METHODS}")
    if a.shape != b.shape or a.dim() != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ShapeError(f"need two square RDMs of the same C >= 3 conditions, got {tuple(a.shape)} and {tuple(b.shape)}")
    iu = torch.triu_indices(a.shape[0], a.shape[0], offset=1)
    u, v = a.double()[iu[0], iu[1]], b.double()[iu[0], iu[1]]
    if method == "spearman":
        u, v = average_ranks(u), average_ranks(v)
    u, v = u - u.mean(), v - v.mean()
    den = float(u.norm() * v.norm())
    return float(u @ v) / den if den > 0 else float("nan")
