r"""Convergent learning beyond one-to-one: sparse (one-to-many) prediction of one network's units
from another's, and many-to-many groups of units by spectral clustering.

Paper: Li, Yosinski, Clune, Lipson & Hopcroft, "Convergent Learning: Do different neural networks
learn the same representations?", ICLR 2016, arXiv:1511.07543 (Sec. 3: one-to-one matching, in
``lens.similarity.match_neurons``; Sec. 4: a sparse, L1-penalised linear mapping from all units of
one network to each unit of the other; Sec. 5: spectral clustering of the units of both networks
into many-to-many groups).

With every unit standardised over the N examples (zero mean, unit variance), unit ``j`` of network
2, ``b_j``, is predicted from the units ``A`` of network 1 by the lasso

    w_j = argmin_w  1/(2N) ||b_j - A w||^2 + lam ||w||_1,                                    (1)

solved here to optimality for all ``j`` at once by FISTA (proximal gradient with Nesterov
momentum, step ``1/L``, ``L = lambda_max(A^T A / N)``, soft-thresholding ``S_t(x) = sign(x)
max(|x| - t, 0)``); the paper trains the same mapping layer by SGD. ``lam -> 0`` gives the
least-squares map (fully distributed code); ``lam`` large keeps few units per unit (local code).
The one-to-one baseline predicts ``b_j`` by its matched unit only: with standardised units its
mean squared error is ``1 - rho_{pi(j) j}^2``.

Many-to-many (Sec. 5): the units of both networks are the nodes of a graph with affinity
``|rho|`` between every pair (within and across networks); spectral clustering (normalised
Laplacian ``I - D^{-1/2} W D^{-1/2}``, its ``k`` smallest eigenvectors, rows normalised, then
k-means) splits them into ``k`` groups, each a set of units of both networks that span a shared
subspace.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .hash_codes import kmeans
from .similarity import correlation_matrix, match_neurons

__all__ = ["standardize", "soft_threshold", "lasso", "SparsePrediction", "sparse_prediction",
           "one_to_one_errors", "spectral_groups"]


def standardize(x: Tensor) -> Tensor:
    """Columns of ``x`` (N, units) to zero mean and unit variance (population); constant columns
    become 0. Float64."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise ShapeError(f"activations must be (N, units) with N >= 2, got {tuple(x.shape)}")
    x = x.detach().double()
    c = x - x.mean(0, keepdim=True)
    sd = c.pow(2).mean(0, keepdim=True).sqrt()
    return torch.where(sd > 0, c / sd.clamp_min(1e-300), torch.zeros_like(c))


def soft_threshold(x: Tensor, t: float) -> Tensor:
    """``S_t(x) = sign(x) max(|x| - t, 0)``, the proximal map of ``t ||.||_1``."""
    return torch.sign(x) * (x.abs() - t).clamp_min(0.0)


def lasso(A: Tensor, B: Tensor, lam: float, *, tol: float = 1e-10, max_iter: int = 20_000) -> Tensor:
    """``W`` (units_a, units_b) solving (1) for every column of ``B`` (FISTA with restart on
    non-monotone steps; stops when ``max |W_k - W_{k-1}| <= tol``). Float64."""
    if not lam >= 0:
        raise ConfigError(f"lasso: need lam >= 0, got {lam}")
    A, B = A.double(), B.double()
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[0]:
        raise ShapeError(f"lasso: A (N, units_a) and B (N, units_b) with the same N, got {tuple(A.shape)} and "
                         f"{tuple(B.shape)}")
    N = A.shape[0]
    G, C = A.T @ A / N, A.T @ B / N  # the gradient of the smooth part at W is G W - C
    L = float(torch.linalg.eigvalsh(G)[-1])
    if L <= 0:
        return torch.zeros(A.shape[1], B.shape[1], dtype=torch.float64)
    W = torch.zeros(A.shape[1], B.shape[1], dtype=torch.float64)
    Y, t = W.clone(), 1.0
    for _ in range(max_iter):
        W_next = soft_threshold(Y - (G @ Y - C) / L, lam / L)
        if float((W_next - W).abs().max()) <= tol:
            return W_next
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        Y = W_next + ((t - 1) / t_next) * (W_next - W)
        W, t = W_next, t_next
    return W


@dataclass(frozen=True)
class SparsePrediction:
    """Per unit of network 2: ``mse`` of the sparse prediction (1) and ``nonzero`` (units of
    network 1 it uses); ``weights`` (units_a, units_b); ``one_to_one`` the baseline's errors."""

    weights: Tensor
    mse: Tensor
    nonzero: Tensor
    one_to_one: Tensor

    @property
    def error_ratio(self) -> float:
        """Mean sparse-prediction error over mean one-to-one error (below 1: a unit of network 2
        is better described by a few units of network 1 than by its single match)."""
        return float(self.mse.mean() / self.one_to_one.mean().clamp_min(1e-300))


def one_to_one_errors(a: Tensor, b: Tensor) -> Tensor:
    """``1 - rho_{pi(j) j}^2`` per unit ``j`` of ``b``, with ``pi`` the one-to-one matching of
    ``match_neurons`` (maximising total correlation) from the units of ``b`` to those of ``a``:
    the error of predicting standardised ``b_j`` by the best multiple of its match."""
    _, rho = match_neurons(b, a, method="correlation", matching="one_to_one")
    return 1.0 - rho.pow(2)


def sparse_prediction(a: Tensor, b: Tensor, lam: float, *, tol: float = 1e-10) -> SparsePrediction:
    """Predict each unit of ``b`` (N, units_b) from all units of ``a`` (N, units_a) by (1) on the
    standardised activations; units constant over the examples are dropped from both."""
    A, B = standardize(a), standardize(b)
    A, B = A[:, A.abs().sum(0) > 0], B[:, B.abs().sum(0) > 0]
    if A.shape[1] == 0 or B.shape[1] == 0:
        raise ConfigError("sparse_prediction: every unit is constant over these examples (dead units); use other "
                          "inputs or another layer")
    if B.shape[1] > A.shape[1]:
        raise ShapeError(f"one-to-one matching needs units_b <= units_a after dropping constant units, got "
                         f"{B.shape[1]} > {A.shape[1]}; swap a and b")
    W = lasso(A, B, lam, tol=tol)
    mse = (B - A @ W).pow(2).mean(0)
    return SparsePrediction(W, mse, (W != 0).sum(0), one_to_one_errors(A, B))


def spectral_groups(a: Tensor, b: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """Group labels (units_a + units_b,) of the units of both networks (``a``'s first): spectral
    clustering of the affinity ``|rho|`` between all pairs of units (module docstring)."""
    X = torch.cat([standardize(a), standardize(b)], dim=1)
    n = X.shape[1]
    if not 1 <= k <= n:
        raise ConfigError(f"spectral_groups: need 1 <= k <= {n} (units of both networks), got k={k}")
    W = correlation_matrix(X, X).abs()
    d = W.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    L = torch.eye(n, dtype=torch.float64) - inv[:, None] * W * inv[None, :]
    _, vecs = torch.linalg.eigh(L)
    U = vecs[:, :k]
    U = U / U.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return kmeans(U, k, generator=generator)[1]
