r"""Functionally equivalent features of a ReLU MLP, merged: feature complexity per layer (IFM).

Paper: Chen, Zhou & Yan, "Going Beyond Neural Network Feature Similarity: The Network Feature
Complexity and Its Interpretation Using Category Theory", ICLR 2024, arXiv:2310.06756. Two features
are *functionally equivalent* when one is the other composed with an invertible transformation
that the following layers can absorb; the *feature complexity* of a layer is the number of
features left once equivalent ones are merged, and Iterative Feature Merging (IFM) computes it
from the weights alone (data-agnostic), merging the most similar pair of features while their
distance is at most a threshold ``β``.

For a ReLU layer the transformations are positive scalings (``ReLU(c a) = c ReLU(a)``, ``c > 0``):
unit ``j`` with incoming row ``r_j = (w_j, b_j) = c_j u_j`` (``||u_j|| = 1``) computes
``c_j ReLU(u_j · (x, 1))``, so units with the same direction ``u`` are equivalent and the layer

    h_{k+1} = W_{k+1} ReLU(W_k h_k + b_k) + b_{k+1}

is unchanged when a group ``G`` of them is replaced by one unit with row ``Σ_{j∈G} r_j`` (direction
``u``, norm ``C = Σ c_j``) and outgoing column ``Σ_{j∈G} c_j W_{k+1}[:, j] / C`` (the folding of the
outgoing weights). IFM here: per hidden layer, first to last, features are compared by the
distance ``||u_i - u_j||`` of their directions (0 exactly for equivalent features; 2 for
``r_j = -c r_i``, which are not equivalent for ReLU), and the closest pair of groups is merged
(group direction: ``Σ r_j`` normalized) while that distance is ``<= β``; a unit whose row is zero
(always 0) is removed. At ``β = 0`` only exactly equivalent features merge and the function is
preserved exactly (tested to 1e-10 in float64); ``β > 0`` merges near-equivalent ones (the paper's
data-agnostic pruning, no fine-tuning). Verified against the paper's abstract and the
definitions above; the paper's pairwise merging criterion is stated here for positive scaling
only (its category-theoretic framing covers other invertible maps, e.g. of conv channels).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .regions import mlp_weights

__all__ = ["MergeResult", "merge_features", "feature_complexity", "merge_model", "parameter_count", "to_sequential"]


@dataclass(frozen=True)
class MergeResult:
    """The merged network (float64 weights and biases), the number of features of each hidden layer
    before (``widths``) and after (``complexity``), and, per hidden layer, the original units that
    each kept feature stands for (``groups``; removed zero units are in no group)."""

    weights: list[Tensor]
    biases: list[Tensor]
    widths: list[int]
    complexity: list[int]
    groups: list[list[list[int]]]

    @property
    def parameters(self) -> tuple[int, int]:
        """(parameters before, after)."""
        sizes = [self.weights[0].shape[1], *self.widths, self.weights[-1].shape[0]]
        before = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        return before, parameter_count(self.weights)


def parameter_count(weights: Sequence[Tensor]) -> int:
    """Weights and biases of the MLP with these weight shapes."""
    return sum(W.shape[0] * W.shape[1] + W.shape[0] for W in weights)


def _merge_layer(R: np.ndarray, beta: float, tol: float) -> tuple[list[list[int]], np.ndarray]:
    """Groups of rows (``R``: incoming rows with bias) merged while the closest pair of group
    directions is within ``beta``; returns the groups and each row's norm."""
    norms = np.linalg.norm(R, axis=1)
    alive = [j for j in range(len(R)) if norms[j] > tol * max(1.0, norms.max())]
    groups = [[j] for j in alive]
    sums = [R[j].copy() for j in alive]  # Σ r_j of each group: its direction
    if len(groups) < 2:
        return groups, norms
    from scipy.spatial.distance import cdist

    U = np.array([s / np.linalg.norm(s) for s in sums])
    D = cdist(U, U)  # ||u_i - u_j|| by differences (2 - 2 u.v loses half the digits near 0)
    np.fill_diagonal(D, np.inf)
    active = np.ones(len(groups), dtype=bool)
    while active.sum() > 1:
        flat = int(np.argmin(D))
        i, j = divmod(flat, len(groups))
        if D[i, j] > beta:
            break
        groups[i] += groups[j]
        sums[i] = sums[i] + sums[j]
        active[j] = False
        D[j, :] = np.inf
        D[:, j] = np.inf
        u = sums[i] / np.linalg.norm(sums[i])
        U[i] = u
        d = np.linalg.norm(U - u, axis=1)
        d[~active] = np.inf
        d[i] = np.inf
        D[i, :] = d
        D[:, i] = d
    return [sorted(g) for g, a in zip(groups, active) if a], norms


def merge_features(weights: Sequence[Tensor], biases: Sequence[Tensor], beta: float = 0.0, *,
                   tol: float = 1e-9) -> MergeResult:
    """IFM on the MLP ``W_L ReLU(... ReLU(W_1 x + b_1) ...) + b_L`` (see the module docstring):
    features whose directions are within ``beta`` merge (``beta = 0``: exactly equivalent ones, up
    to ``tol`` in the direction distance, the rounding of a rescaled row), layer by layer from the
    first hidden layer; rows of norm <= 1e-12 x the layer's largest are zero units, removed."""
    if len(weights) != len(biases) or len(weights) < 2:
        raise ConfigError(f"merge_features needs an MLP with at least one hidden layer (one bias per weight); "
                          f"got {len(weights)} weights and {len(biases)} biases")
    if not beta >= 0:
        raise ConfigError(f"beta is a distance between unit vectors, >= 0; got {beta}")
    Ws = [W.detach().double().cpu().numpy().copy() for W in weights]
    bs = [b.detach().double().cpu().numpy().copy() for b in biases]
    for k, (W, b, W2) in enumerate(zip(Ws[:-1], bs[:-1], Ws[1:])):
        if W2.shape[1] != W.shape[0] or b.shape != (W.shape[0],):
            raise ShapeError(f"layer {k}: weight {W.shape} / bias {b.shape} do not chain into the next weight {W2.shape}")
    widths, complexity, all_groups = [], [], []
    for k in range(len(Ws) - 1):
        R = np.concatenate([Ws[k], bs[k][:, None]], axis=1)
        groups, norms = _merge_layer(R, max(beta, tol), 1e-12)
        widths.append(len(R))
        rows, cols = [], []
        for g in groups:
            total = norms[g].sum()
            rows.append(R[g].sum(0))
            cols.append((Ws[k + 1][:, g] * norms[g]).sum(1) / total)
        rows_a = np.array(rows).reshape(len(groups), R.shape[1])
        Ws[k], bs[k] = rows_a[:, :-1], rows_a[:, -1]
        Ws[k + 1] = np.array(cols).T.reshape(Ws[k + 1].shape[0], len(groups))
        complexity.append(len(groups))
        all_groups.append(groups)
    return MergeResult([torch.from_numpy(W) for W in Ws], [torch.from_numpy(b) for b in bs], widths, complexity,
                       all_groups)


def feature_complexity(weights: Sequence[Tensor], biases: Sequence[Tensor], beta: float = 0.0) -> list[int]:
    """The number of features of each hidden layer after IFM at threshold ``beta``."""
    return merge_features(weights, biases, beta).complexity


def to_sequential(weights: Sequence[Tensor], biases: Sequence[Tensor], dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """``nn.Sequential(Linear, ReLU, ..., Linear)`` with these weights (a new module)."""
    layers: list[nn.Module] = []
    for W, b in zip(weights, biases):
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def merge_model(model: nn.Module, beta: float = 0.0) -> tuple[nn.Sequential, MergeResult]:
    """IFM of an ``nn.Sequential(Linear, ReLU, ..., Linear)``: a new, smaller module (the input's
    dtype) and the result; the input module is not modified."""
    ws, bs = mlp_weights(model)
    res = merge_features(ws, bs, beta)
    return to_sequential(res.weights, res.biases, dtype=ws[0].dtype), res
