"""Representation similarity: HSIC, linear and RBF CKA, minibatch CKA, neuron matching.

Papers
------
- Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited",
  2019, arXiv:1905.00414 (CKA, linear and RBF).
- Song, Smola, Gretton, Bedo & Borgwardt, "Feature Selection via Dependence Maximization",
  JMLR 2012 (the unbiased HSIC estimator).
- Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things? Uncovering How
  Neural Network Representations Vary with Width and Depth", 2021, arXiv:2010.15327 (minibatch
  CKA from averaged unbiased HSIC).
- Li, Yosinski, Clune, Lipson & Hopcroft, "Convergent Learning: Do different neural networks
  learn the same representations?", 2016, arXiv:1511.07543 (one-to-one unit matching by
  bipartite matching of correlations; semi-matching).

Definitions (n examples; K, L the n×n Gram matrices of two representations; H = I − 11ᵀ/n)
-------------------------------------------------------------------------------------------
- Biased HSIC (Kornblith et al.):   HSIC₀(K, L) = tr(KHLH) / (n − 1)².
- Unbiased HSIC (Song et al. 2012), with K̃, L̃ equal to K, L with their diagonals set to 0,
  n ≥ 4:
      HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n − 1)(n − 2)) − 2/(n − 2)·1ᵀK̃L̃1] / (n(n − 3)).
  It is a U-statistic, so E[HSIC₁] equals the population HSIC exactly; it is unchanged by
  K → K + f1ᵀ + 1fᵀ, so centering the features first does not change it.
- CKA(K, L) = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)); "debiased" CKA uses HSIC₁ in all three places
  (Kornblith et al.); it can be slightly negative, and is nan when a self-HSIC₁ is ≤ 0 (tiny n).
- Linear kernel K = XXᵀ on column-centered X (n, p₁), Y (n, p₂). Feature-space form:
      CKA_lin = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F),
  O(n p²) instead of O(n² p); the debiased form also has a feature-space expression (used when
  p < n). Both forms are computed here and tested to agree.
- RBF kernel k(xᵢ, xⱼ) = exp(−‖xᵢ − xⱼ‖² / (2σ²)) with σ = ``sigma`` × the median Euclidean
  distance between distinct examples (Kornblith et al. set σ to a fraction of the median
  distance). Default fraction: 1.0. The median is over the n(n − 1)/2 pairs i < j (average of
  the two middle values for an even count). With this data-dependent σ, RBF CKA is invariant to
  orthogonal transforms and isotropic scaling, like linear CKA.
- Minibatch CKA (Nguyen et al.): over k minibatches,
      CKA_mb = (1/k Σ HSIC₁(K_b, L_b)) / √((1/k Σ HSIC₁(K_b, K_b))·(1/k Σ HSIC₁(L_b, L_b))).
- Neuron matching (Li et al.): ρ_ij = Pearson correlation over the examples between unit i
  of network A and unit j of network B. One-to-one: the injective assignment π maximizing
  Σᵢ ρ_{i, π(i)} (Hungarian / shortest augmenting path, implemented here). Semi-matching:
  π(i) = argmax_j ρ_ij (several units of A may share a partner).

Everything is computed in float64 on the inputs' device; inputs are detached and not modified.
Cost: Gram forms O(n² p) time and O(n²) memory per representation; every HSIC is O(n²) once
the Grams exist (no n³ products).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from layerlab.errors import ConfigError, ShapeError, unknown_name

__all__ = [
    "MinibatchCKA",
    "assign",
    "cka",
    "cka_matrix",
    "correlation_matrix",
    "gram",
    "hsic",
    "match_neurons",
]

KERNELS = ("linear", "rbf")
FORMS = ("auto", "features", "gram")
METHODS = ("correlation", "abs_correlation")
MATCHINGS = ("one_to_one", "semi")
DEFAULT_SIGMA = 1.0


# ----------------------------------------------------------------------------- input handling
def _as_features(x: Tensor, name: str) -> Tensor:
    """(n, ...) -> (n, p) float64, detached; a 1-D tensor is one feature."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape (n, ...), got {type(x).__name__}")
    x = x.detach()
    if x.ndim == 0:
        raise ShapeError(f"{name} is a scalar; pass features of shape (n, p) (n examples)")
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
    if x.shape[1] == 0:
        raise ShapeError(f"{name} has no features (shape {tuple(x.shape)}); pass (n, p) with p ≥ 1")
    return x.to(torch.float64)


def _check_pair(x: Tensor, y: Tensor, debiased: bool) -> None:
    if x.shape[0] != y.shape[0]:
        raise ShapeError(
            f"x and y must describe the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}"
        )
    _check_n(x.shape[0], debiased)


def _check_n(n: int, debiased: bool) -> None:
    if debiased and n < 4:
        raise ShapeError(f"the unbiased HSIC estimator needs n ≥ 4 examples, got {n}")
    if n < 2:
        raise ShapeError(f"HSIC needs at least 2 examples, got {n}")


def _check_kernel(kernel: str, sigma: float | None) -> float:
    if kernel not in KERNELS:
        raise unknown_name("kernel", kernel, KERNELS)
    s = DEFAULT_SIGMA if sigma is None else float(sigma)
    if not s > 0 or not math.isfinite(s):
        raise ConfigError(f"sigma (fraction of the median distance) must be > 0, got {sigma}")
    if kernel == "linear" and sigma is not None:
        raise ConfigError("sigma is the RBF bandwidth; it has no meaning for kernel='linear'")
    return s


# ----------------------------------------------------------------------------- kernels and HSIC
def _median_pairwise_distance(sq: Tensor) -> Tensor:
    """Median of √sq over pairs i < j (even count: mean of the two middle values)."""
    n = sq.shape[-1]
    iu = torch.triu_indices(n, n, offset=1, device=sq.device)
    d = sq[iu[0], iu[1]].sqrt()
    m = d.numel()
    lo = torch.kthvalue(d, (m + 1) // 2).values
    hi = torch.kthvalue(d, m // 2 + 1).values
    return (lo + hi) / 2


def gram(x: Tensor, kernel: str = "linear", *, sigma: float | None = None) -> Tensor:
    """Gram matrix (n, n), float64, of features ``x`` (n, ...) under ``kernel``.

    ``linear``: K = X̃X̃ᵀ with X̃ the column-centered features. ``rbf``: exp(−‖xᵢ − xⱼ‖²/(2σ²)),
    σ = ``sigma`` (default 1.0) × the median distance between distinct examples.
    """
    s = _check_kernel(kernel, sigma)
    x = _as_features(x, "x")
    x = x - x.mean(0, keepdim=True)
    k = x @ x.T
    if kernel == "linear":
        return k
    norms = k.diagonal()
    sq = (norms[:, None] + norms[None, :] - 2 * k).clamp_min(0)
    sq.fill_diagonal_(0)
    if x.shape[0] < 2:
        raise ShapeError("the RBF bandwidth needs at least 2 examples")
    med = _median_pairwise_distance(sq)
    return torch.exp(-sq / (2 * (s * med) ** 2))


def _center_gram(k: Tensor) -> Tensor:
    """H K H for a (..., n, n) batch, without forming H."""
    return (
        k
        - k.mean(-1, keepdim=True)
        - k.mean(-2, keepdim=True)
        + k.mean((-2, -1), keepdim=True)
    )


def _zero_diag(k: Tensor) -> Tensor:
    return k - torch.diag_embed(k.diagonal(dim1=-2, dim2=-1))


def hsic(k: Tensor, l: Tensor, *, debiased: bool = False) -> Tensor:
    """HSIC of symmetric Gram matrices ``k`` and ``l``, each (..., n, n) (batch dims broadcast).

    Biased: tr(KHLH)/(n − 1)². Unbiased (``debiased=True``, n ≥ 4): Song et al.'s HSIC₁ (module
    docstring). Returns a float64 tensor of the broadcast batch shape (0-d for single matrices).
    """
    if k.ndim < 2 or k.shape[-1] != k.shape[-2] or l.ndim < 2 or l.shape[-1] != l.shape[-2]:
        raise ShapeError(
            f"hsic takes square Gram matrices (..., n, n); got {tuple(k.shape)} and {tuple(l.shape)}"
        )
    if k.shape[-1] != l.shape[-1]:
        raise ShapeError(f"Gram matrices of different sizes: {k.shape[-1]} and {l.shape[-1]}")
    n = k.shape[-1]
    _check_n(n, debiased)
    # Both estimators are unchanged by K → HKH (HSIC₁ because K → K + f1ᵀ + 1fᵀ + c11ᵀ leaves it
    # unchanged for symmetric K); centering first avoids cancellation when K ≈ const (wide RBF).
    k = _center_gram(k.detach().to(torch.float64))
    l = _center_gram(l.detach().to(torch.float64))
    if not debiased:
        return (k * l.mT).sum((-2, -1)) / (n - 1) ** 2
    kt, lt = _zero_diag(k), _zero_diag(l)
    tr = (kt * lt.mT).sum((-2, -1))
    ksum, lsum = kt.sum((-2, -1)), lt.sum((-2, -1))
    cross = (kt.sum(-2) * lt.sum(-1)).sum(-1)  # 1ᵀK̃ · L̃1
    return (tr + ksum * lsum / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (n * (n - 3))


def _pairwise_hsic(ks: Tensor, ls: Tensor, debiased: bool) -> Tensor:
    """HSIC of every pair: ks (a, n, n), ls (b, n, n) symmetric -> (a, b)."""
    n = ks.shape[-1]
    a, b = ks.shape[0], ls.shape[0]
    ks, ls = _center_gram(ks), _center_gram(ls)  # see hsic()
    if not debiased:
        return ks.reshape(a, -1) @ ls.reshape(b, -1).T / (n - 1) ** 2
    kt, lt = _zero_diag(ks), _zero_diag(ls)
    tr = kt.reshape(a, -1) @ lt.reshape(b, -1).T
    krow, lrow = kt.sum(-1), lt.sum(-1)  # (a, n), (b, n): K̃1 (= 1ᵀK̃ for symmetric K̃)
    ksum, lsum = krow.sum(-1), lrow.sum(-1)
    cross = krow @ lrow.T
    return (tr + ksum[:, None] * lsum[None, :] / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (
        n * (n - 3)
    )


def _self_hsic(ks: Tensor, debiased: bool) -> Tensor:
    """HSIC(Kᵢ, Kᵢ) for each Gram of a (a, n, n) stack -> (a,)."""
    return hsic(ks, ks, debiased=debiased)


# ----------------------------------------------------------------------------- CKA
def _linear_feature_terms(x: Tensor, y: Tensor, debiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(HSIC(X,Y), HSIC(X,X), HSIC(Y,Y)) for the linear kernel in feature space, up to one
    common positive factor. x, y: centered (n, p₁), (n, p₂)."""
    n = x.shape[0]
    xy = (y.T @ x).square().sum()
    xx = (x.T @ x).square().sum()
    yy = (y.T @ y).square().sum()
    if not debiased:
        return xy, xx, yy
    dx, dy = x.square().sum(1), y.square().sum(1)  # diagonals of K and L
    # K̃1 = X(Xᵀ1) − diag(K); 1ᵀK̃1 = ‖Xᵀ1‖² − Σ diag(K); tr(K̃L̃) = ‖YᵀX‖² − Σ K_ii L_ii
    sx, sy = x.sum(0), y.sum(0)
    kx, ky = x @ sx - dx, y @ sy - dy
    tx, ty = kx.sum(), ky.sum()

    def h(tr: Tensor, t1: Tensor, t2: Tensor, r1: Tensor, r2: Tensor) -> Tensor:
        return tr + t1 * t2 / ((n - 1) * (n - 2)) - 2 * (r1 @ r2) / (n - 2)

    return (
        h(xy - dx @ dy, tx, ty, kx, ky),
        h(xx - dx @ dx, tx, tx, kx, kx),
        h(yy - dy @ dy, ty, ty, ky, ky),
    )


def _ratio(xy: Tensor, xx: Tensor, yy: Tensor) -> Tensor:
    return xy / torch.sqrt(xx * yy)


def cka(
    x: Tensor,
    y: Tensor,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float | None = None,
    *,
    form: str = "auto",
) -> float:
    """Centered kernel alignment between features ``x`` (n, ...) and ``y`` (n, ...).

    Trailing dims are flattened to (n, p). ``kernel``: "linear" or "rbf" (σ = ``sigma`` × median
    pairwise distance, default fraction 1.0). ``debiased``: use the unbiased HSIC₁ (n ≥ 4).
    ``form`` (linear kernel only): "features" (O(n p²), default when max(p₁, p₂) < n), "gram"
    (O(n² p), the reference) or "auto". Returns a float in [0, 1] for the biased estimator
    (debiased can be slightly negative); nan when a representation is constant.
    """
    s = _check_kernel(kernel, sigma)
    if form not in FORMS:
        raise unknown_name("CKA form", form, FORMS)
    xf, yf = _as_features(x, "x"), _as_features(y, "y")
    _check_pair(xf, yf, debiased)
    n = xf.shape[0]
    if kernel == "rbf" and form == "features":
        raise ConfigError("the feature-space form exists only for kernel='linear'; use form='gram'")
    use_features = kernel == "linear" and (
        form == "features" or (form == "auto" and max(xf.shape[1], yf.shape[1]) < n)
    )
    if use_features:
        xc, yc = xf - xf.mean(0, keepdim=True), yf - yf.mean(0, keepdim=True)
        return float(_ratio(*_linear_feature_terms(xc, yc, debiased)))
    if kernel == "rbf":
        k, l = gram(xf, "rbf", sigma=s), gram(yf, "rbf", sigma=s)
    else:
        k, l = gram(xf), gram(yf)
    return float(
        _ratio(hsic(k, l, debiased=debiased), hsic(k, k, debiased=debiased),
               hsic(l, l, debiased=debiased))
    )


def _gram_stack(feats: Sequence[Tensor], kernel: str, sigma: float | None, name: str) -> Tensor:
    if len(feats) == 0:
        raise ShapeError(f"{name} is empty; pass a list of (n, ...) feature tensors, one per layer")
    grams = [gram(f, kernel, sigma=sigma) for f in feats]
    n = {g.shape[0] for g in grams}
    if len(n) != 1:
        raise ShapeError(f"every tensor in {name} must have the same n (examples); got sizes {sorted(n)}")
    return torch.stack(grams)


def _cka_from_grams(ks: Tensor, ls: Tensor, debiased: bool) -> Tensor:
    return _ratio(
        _pairwise_hsic(ks, ls, debiased),
        _self_hsic(ks, debiased)[:, None],
        _self_hsic(ls, debiased)[None, :],
    )


def cka_matrix(
    features_a: Sequence[Tensor],
    features_b: Sequence[Tensor],
    *,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float | None = None,
) -> Tensor:
    """CKA between every layer of ``features_a`` and every layer of ``features_b`` on full data.

    Each element is an (n, ...) tensor over the same n examples. Returns a float64 tensor
    (len(features_a), len(features_b)); entry (i, j) equals ``cka(a[i], b[j], ...)``. Memory:
    (len(a) + len(b)) Gram matrices of n² float64.
    """
    _check_kernel(kernel, sigma)
    ks = _gram_stack(features_a, kernel, sigma, "features_a")
    ls = _gram_stack(features_b, kernel, sigma, "features_b")
    if ks.shape[-1] != ls.shape[-1]:
        raise ShapeError(
            f"features_a has n = {ks.shape[-1]} examples, features_b has n = {ls.shape[-1]}"
        )
    _check_n(ks.shape[-1], debiased)
    return _cka_from_grams(ks, ls, debiased)


class MinibatchCKA:
    """Minibatch CKA (Nguyen, Raghu & Kornblith 2021) accumulated over batches.

    ``update(xs, ys)`` takes, for one minibatch of n ≥ 4 examples, a list of features per layer of
    network A (each (n, ...)) and of network B (same n), and adds HSIC₁ of every (i, j) pair and
    every self pair. ``compute()`` returns the float64 (len(xs), len(ys)) matrix
    Σ_b HSIC₁(K_i, L_j) / √(Σ_b HSIC₁(K_i, K_i) · Σ_b HSIC₁(L_j, L_j)). Because HSIC₁ is unbiased,
    this converges to the population CKA as batches accumulate, whatever the batch size.
    ``debiased=False`` accumulates the biased HSIC₀ instead (biased for small batches).
    """

    def __init__(self, *, kernel: str = "linear", debiased: bool = True, sigma: float | None = None):
        _check_kernel(kernel, sigma)
        self.kernel, self.debiased, self.sigma = kernel, debiased, sigma
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._xy: Tensor | None = None
        self._xx: Tensor | None = None
        self._yy: Tensor | None = None
        self.batches = 0

    @torch.no_grad()
    def update(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> None:
        """Accumulate one minibatch: ``xs`` and ``ys`` are lists of (n, ...) tensors."""
        ks = _gram_stack(xs, self.kernel, self.sigma, "xs")
        ls = _gram_stack(ys, self.kernel, self.sigma, "ys")
        if ks.shape[-1] != ls.shape[-1]:
            raise ShapeError(f"xs have n = {ks.shape[-1]} examples but ys have n = {ls.shape[-1]}")
        _check_n(ks.shape[-1], self.debiased)
        xy = _pairwise_hsic(ks, ls, self.debiased)
        xx, yy = _self_hsic(ks, self.debiased), _self_hsic(ls, self.debiased)
        if self._xy is None:
            self._xy, self._xx, self._yy = xy, xx, yy
        else:
            if xy.shape != self._xy.shape:
                raise ShapeError(
                    f"this batch has {tuple(xy.shape)} (layers of xs, ys); earlier batches had "
                    f"{tuple(self._xy.shape)}: pass the same layers every batch"
                )
            self._xy = self._xy + xy
            self._xx = self._xx + xx
            self._yy = self._yy + yy
        self.batches += 1

    def compute(self) -> Tensor:
        """The (len(xs), len(ys)) CKA matrix over all batches seen (float64)."""
        if self._xy is None:
            raise ConfigError("MinibatchCKA.compute() before any update(); feed at least one batch")
        return _ratio(self._xy, self._xx[:, None], self._yy[None, :])


# ----------------------------------------------------------------------------- neuron matching
def insert_row(cost: np.ndarray, u: np.ndarray, v: np.ndarray, owner: np.ndarray, way: np.ndarray, i: int) -> None:
    """One step of the shortest-augmenting-path assignment: insert the 1-based row ``i``.

    A Dijkstra search over columns on the reduced costs ``cost[i', j] - u[i'] - v[j]`` (1-based
    potentials ``u``, ``v``; ``owner[j]`` the 1-based row holding column ``j``, 0 if free) until a
    free column is reached; the potentials shift so matched edges stay tight, and the path is
    flipped. Updates ``u``, ``v``, ``owner`` and ``way`` in place. Inner steps are vectorized
    over columns.
    """
    c = cost.shape[1]
    owner[0] = i
    j0 = 0
    minv = np.full(c + 1, np.inf)
    used = np.zeros(c + 1, dtype=bool)
    while True:
        used[j0] = True
        i0 = owner[j0]
        free = ~used[1:]
        reduced = cost[i0 - 1] - u[i0] - v[1:]
        better = free & (reduced < minv[1:])
        minv[1:][better] = reduced[better]
        way[1:][better] = j0
        masked = np.where(free, minv[1:], np.inf)
        j1 = int(np.argmin(masked)) + 1
        delta = masked[j1 - 1]
        u[owner[used]] += delta  # owners of used columns are distinct rows
        v[used] -= delta
        minv[~used] -= delta
        j0 = j1
        if owner[j0] == 0:
            break
    while j0:  # flip the path
        j1 = way[j0]
        owner[j0] = owner[j1]
        j0 = j1


def _assign_min(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of every row of cost (r, c), r ≤ c, to a distinct column.

    Shortest augmenting paths with dual potentials (the O(r² c) Hungarian / Jonker–Volgenant
    scheme): rows are inserted one at a time; each insertion grows a Dijkstra-like tree over
    columns on reduced costs cost[i, j] − u[i] − v[j] ≥ 0 until a free column is reached, then
    flips the path. Inner steps are vectorized over columns.
    """
    r, c = cost.shape
    u = np.zeros(r + 1)
    v = np.zeros(c + 1)
    owner = np.zeros(c + 1, dtype=np.int64)  # owner[j]: 1-based row matched to column j (0 = free)
    way = np.zeros(c + 1, dtype=np.int64)
    for i in range(1, r + 1):
        insert_row(cost, u, v, owner, way, i)
    rows_to_cols = np.empty(r, dtype=np.int64)
    matched = np.nonzero(owner[1:])[0]
    rows_to_cols[owner[1:][matched] - 1] = matched
    return rows_to_cols


def assign(cost: Tensor, *, maximize: bool = False) -> Tensor:
    """Optimal one-to-one assignment for a (r, c) score matrix.

    If r ≤ c, returns a LongTensor (r,) of distinct column indices minimizing (or, with
    ``maximize``, maximizing) Σᵢ cost[i, π(i)]. If r > c, returns (r,) with the c matched rows
    holding their column and the unmatched rows −1. Exact (Hungarian / shortest augmenting path).
    """
    if not isinstance(cost, Tensor) or cost.ndim != 2:
        raise ShapeError(f"assign takes a 2-D cost matrix (rows, cols); got {getattr(cost, 'shape', cost)}")
    c = cost.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(c).all():
        raise ConfigError("assign needs a finite cost matrix (replace nan/inf first)")
    if maximize:
        c = -c
    r, m = c.shape
    if r <= m:
        out = _assign_min(c)
    else:
        cols_to_rows = _assign_min(c.T)
        out = np.full(r, -1, dtype=np.int64)
        out[cols_to_rows] = np.arange(m)
    return torch.from_numpy(out).to(cost.device)


def correlation_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation (units_a, units_b), float64, between the units (columns) of ``a``
    (n, units_a) and ``b`` (n, units_b) over the n examples. A constant unit gets correlation 0."""
    af, bf = _as_features(a, "a"), _as_features(b, "b")
    if af.shape[0] != bf.shape[0]:
        raise ShapeError(f"a has {af.shape[0]} examples, b has {bf.shape[0]}: use the same inputs")
    if af.shape[0] < 2:
        raise ShapeError("correlations need at least 2 examples")
    ac = af - af.mean(0, keepdim=True)
    bc = bf - bf.mean(0, keepdim=True)
    na, nb = ac.norm(dim=0), bc.norm(dim=0)
    ia = torch.where(na > 0, 1 / na, torch.zeros_like(na))
    ib = torch.where(nb > 0, 1 / nb, torch.zeros_like(nb))
    return (ac * ia).T @ (bc * ib)


def match_neurons(
    a: Tensor, b: Tensor, *, method: str = "correlation", matching: str = "one_to_one"
) -> tuple[Tensor, Tensor]:
    """Match the units of two networks' layers (Li et al. 2016).

    ``a`` (n, units_a) and ``b`` (n, units_b): activations of the two layers on the same n inputs
    (trailing dims flattened). ``method``: "correlation" (Pearson ρ) or "abs_correlation" (|ρ|,
    for sign-symmetric units). ``matching``: "one_to_one" (bipartite matching maximizing the total
    score; needs units_a ≤ units_b) or "semi" (each unit of a takes its best unit of b).
    Returns (partner, corr): partner LongTensor (units_a,) with b-unit indices (a permutation when
    units_a = units_b and one-to-one), corr float64 (units_a,) the Pearson ρ of each matched pair.
    """
    if method not in METHODS:
        raise unknown_name("matching method", method, METHODS)
    if matching not in MATCHINGS:
        raise unknown_name("matching", matching, MATCHINGS)
    rho = correlation_matrix(a, b)
    score = rho.abs() if method == "abs_correlation" else rho
    if matching == "semi":
        partner = score.argmax(dim=1)
    else:
        if rho.shape[0] > rho.shape[1]:
            raise ShapeError(
                f"one-to-one matching needs units_a ≤ units_b, got {rho.shape[0]} > {rho.shape[1]}; "
                "swap a and b or use matching='semi'"
            )
        partner = assign(score, maximize=True)
    return partner, rho.gather(1, partner[:, None]).squeeze(1)
