r"""Neural codes as hash codes: determinism and categorization of activation patterns.

Paper: He, Lei, Ji & Tao, "Neural networks behave as hash encoders: An empirical study", 2021,
arXiv:2101.05490 (abstract; the encoding properties). The activation pattern of a ReLU-like network,

    c(x) = [1{z_u(x) > 0}]_u  in {0, 1}^U      (all hidden units u; ``dynamics.activation_bits``),

is its *neural code*. The paper reports two encoding properties of well-trained classifiers:

    (1) determinism: almost every linear region contains at most one training example, measured by
        the redundancy ratio  r = (N - #{distinct c(x_i)}) / N;
    (2) categorization: "according to the neural code, simple algorithms, such as K-Means, K-NN, and
        logistic regression, can achieve fairly good performance on both training and test data".

This module gives (1) and the three algorithms of (2) on codes, as plain functions of code tensors:

    - ``redundancy_ratio`` and ``unique_fraction`` (the share of examples whose code no other
      example has);
    - ``knn_predict``: majority vote of the ``k`` nearest training codes in Hamming distance
      ``d(a, b) = |a| + |b| - 2 <a, b>`` (ties: the label of the nearest neighbour among the tied);
    - ``kmeans``: Lloyd's algorithm on the codes as points of R^U, k-means++ seeding from a
      ``torch.Generator``; ``kmeans_predict`` labels each cluster by the majority label of its
      training members and each point by its cluster's label;
    - ``logistic_regression``: multinomial logistic regression on the codes with an L2 penalty
      ``lam / 2 ||W||^2`` (bias unpenalised), fitted to its optimum by L-BFGS in float64.

``code_categorization`` runs all three from a model and two splits. Everything is computed on
copies; the model is only run (in eval mode, ``torch.no_grad``) through ``dynamics.activation_bits``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._util import side_effect_free
from .dynamics import activation_bits

__all__ = ["redundancy_ratio", "unique_fraction", "hamming_distances", "knn_predict", "kmeans", "kmeans_predict",
           "logistic_regression", "code_categorization"]


def _codes(codes: Tensor, what: str = "codes") -> Tensor:
    if codes.dim() != 2:
        raise ShapeError(f"{what} must be (N, U) (one row of unit bits per example), got {tuple(codes.shape)}")
    return codes.detach().to(torch.float64)


def _labels(labels: Tensor, n: int, what: str = "labels") -> Tensor:
    if labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point():
        raise ShapeError(f"{what} must be integer class indices of shape ({n},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    return labels.detach().long()


def redundancy_ratio(codes: Tensor) -> float:
    """``r = (N - #distinct rows) / N``: 0 when every example has its own code."""
    c = _codes(codes)
    return 1.0 - torch.unique(c, dim=0).shape[0] / c.shape[0]


def unique_fraction(codes: Tensor) -> float:
    """The share of examples whose code no other example has."""
    _, inverse, counts = torch.unique(_codes(codes), dim=0, return_inverse=True, return_counts=True)
    return float((counts[inverse] == 1).double().mean())


def hamming_distances(a: Tensor, b: Tensor) -> Tensor:
    """``(Na, Nb)`` Hamming distances between the binary rows of ``a`` and ``b``, as
    ``|a| + |b| - 2 <a, b>`` (exact in float64 for codes of fewer than 2^53 units)."""
    a, b = _codes(a, "a"), _codes(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"codes of different lengths: {a.shape[1]} and {b.shape[1]} units")
    return a.sum(1, keepdim=True) + b.sum(1) - 2.0 * a @ b.T


def knn_predict(train_codes: Tensor, train_labels: Tensor, codes: Tensor, k: int = 1) -> Tensor:
    """Majority label of the ``k`` nearest training codes (Hamming); ties between labels go to the
    label of the nearest neighbour among the tied ones (neighbours ordered by distance, then index)."""
    y = _labels(train_labels, train_codes.shape[0], "train_labels")
    if not 1 <= k <= len(y):
        raise ConfigError(f"knn_predict: need 1 <= k <= {len(y)} (training examples), got k={k}")
    d = hamming_distances(codes, train_codes)
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]  # ties in distance: lower index first
    near = y[order]  # (N, k), nearest first
    n_classes = int(y.max()) + 1
    votes = torch.zeros(len(near), n_classes, dtype=torch.long).scatter_add_(1, near, torch.ones_like(near))
    top = votes.gather(1, near) == votes.max(1, keepdim=True).values  # which neighbours carry a top label
    first = top.long().argmax(1)  # the nearest of them
    return near.gather(1, first[:, None])[:, 0]


def kmeans(codes: Tensor, k: int, *, generator: torch.Generator, iters: int = 100) -> tuple[Tensor, Tensor]:
    """Lloyd's algorithm from k-means++ seeds: ``(centers (k, U), assignment (N,))``. An empty
    cluster keeps its center. Stops when the assignment no longer changes (or after ``iters``)."""
    x = _codes(codes)
    if not 1 <= k <= x.shape[0]:
        raise ConfigError(f"kmeans: need 1 <= k <= {x.shape[0]} (examples), got k={k}")
    centers = x[torch.randint(x.shape[0], (1,), generator=generator)]
    while centers.shape[0] < k:
        d2 = torch.cdist(x, centers).pow(2).amin(1)
        if float(d2.sum()) == 0.0:  # fewer distinct points than k: reuse a point
            nxt = torch.randint(x.shape[0], (1,), generator=generator)
        else:
            nxt = torch.multinomial(d2 / d2.sum(), 1, generator=generator)
        centers = torch.cat([centers, x[nxt]])
    assign = torch.cdist(x, centers).argmin(1)
    for _ in range(iters):
        for j in range(k):
            members = assign == j
            if members.any():
                centers[j] = x[members].mean(0)
        new = torch.cdist(x, centers).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return centers, assign


def kmeans_predict(centers: Tensor, assignment: Tensor, train_labels: Tensor, codes: Tensor) -> Tensor:
    """Label each cluster by the majority training label of its members (an empty cluster: the
    overall majority), then each code by the label of its nearest center."""
    y = _labels(train_labels, assignment.shape[0], "train_labels")
    n_classes = int(y.max()) + 1
    counts = torch.zeros(centers.shape[0], n_classes, dtype=torch.long)
    counts.index_put_((assignment, y), torch.ones_like(y), accumulate=True)
    overall = torch.bincount(y, minlength=n_classes).argmax()
    cluster_label = torch.where(counts.sum(1) > 0, counts.argmax(1), overall)
    return cluster_label[torch.cdist(_codes(codes), centers.double()).argmin(1)]


def logistic_regression(codes: Tensor, labels: Tensor, *, lam: float = 1e-3, max_iter: int = 500
                        ) -> tuple[Tensor, Tensor]:
    """``(W (C, U), b (C,))`` minimising ``mean_i CE(W c_i + b, y_i) + lam / 2 ||W||_F^2`` (float64,
    L-BFGS with strong-Wolfe line search, from zero; the objective is strictly convex in W for
    ``lam > 0``)."""
    x = _codes(codes)
    y = _labels(labels, x.shape[0])
    if not lam > 0:
        raise ConfigError(f"logistic_regression: need lam > 0 (the L2 penalty makes the optimum unique), got {lam}")
    n_classes = int(y.max()) + 1
    W = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = logistic_objective(W, b, x, y, lam)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach(), b.detach()


def logistic_objective(W: Tensor, b: Tensor, codes: Tensor, labels: Tensor, lam: float) -> Tensor:
    """``mean_i CE(W c_i + b, y_i) + lam / 2 ||W||_F^2`` (what ``logistic_regression`` minimises)."""
    return nn.functional.cross_entropy(codes.double() @ W.T + b, labels) + 0.5 * lam * W.pow(2).sum()


def code_categorization(model: nn.Module, train: tuple[Any, Tensor], test: tuple[Any, Tensor], *,
                        k: int = 1, clusters: int | None = None, lam: float = 1e-3,
                        generator: torch.Generator | None = None) -> dict[str, float]:
    """The encoding properties of ``model`` on ``train = (inputs, labels)`` and ``test``: the
    redundancy ratio and unique fraction of the training codes, and the train and test accuracy of
    K-NN (``k``), K-Means (``clusters``, default the number of classes) and logistic regression
    (``lam``) on the codes (fitted on the training codes)."""
    (xtr, ytr), (xte, yte) = train, test
    with side_effect_free(model), torch.no_grad():
        ctr = activation_bits(model, xtr).double()
        cte = activation_bits(model, xte).double()
    ytr, yte = _labels(ytr, ctr.shape[0], "train labels"), _labels(yte, cte.shape[0], "test labels")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    n_classes = int(torch.cat([ytr, yte]).max()) + 1
    out = {"redundancy_ratio": redundancy_ratio(ctr), "unique_fraction": unique_fraction(ctr),
           "units": float(ctr.shape[1])}
    # K-NN on the training set itself: every point is its own nearest neighbour, so leave it out
    d = hamming_distances(ctr, ctr)
    d.fill_diagonal_(float("inf"))
    loo = ytr[torch.sort(d, dim=1, stable=True).indices[:, 0]] if k == 1 else None
    out["knn_train"] = float((loo == ytr).double().mean()) if loo is not None else float(
        (knn_predict(ctr, ytr, ctr, k) == ytr).double().mean())
    out["knn_test"] = float((knn_predict(ctr, ytr, cte, k) == yte).double().mean())
    centers, assign = kmeans(ctr, clusters or n_classes, generator=gen)
    out["kmeans_train"] = float((kmeans_predict(centers, assign, ytr, ctr) == ytr).double().mean())
    out["kmeans_test"] = float((kmeans_predict(centers, assign, ytr, cte) == yte).double().mean())
    W, b = logistic_regression(ctr, ytr, lam=lam)
    out["logistic_train"] = float(((ctr @ W.T + b).argmax(1) == ytr).double().mean())
    out["logistic_test"] = float(((cte @ W.T + b).argmax(1) == yte).double().mean())
    return out
