r"""Weight spectra: empirical spectral densities, heavy-tail power-law fits, Marchenko–Pastur bulk
and spike counts, and rank measures of weight matrices.

Papers
------
- C. H. Martin, M. W. Mahoney, "Implicit Self-Regularization in Deep Neural Networks: Evidence
  from Random Matrix Theory and Implications for Learning", 2018/2021 (JMLR 22), arXiv:1810.01075.
- C. H. Martin, T. S. Peng, M. W. Mahoney, "Predicting trends in the quality of state-of-the-art
  neural networks without access to training or testing data", 2020/2021 (Nature Communications),
  arXiv:2002.06716.
- A. Clauset, C. R. Shalizi, M. E. J. Newman, "Power-law distributions in empirical data", 2009
  (SIAM Review), arXiv:0706.1062.
- V. A. Marchenko, L. A. Pastur, "Distribution of eigenvalues for some sets of random matrices",
  1967 (Math. USSR-Sbornik).
- O. Roy, M. Vetterli, "The effective rank: a measure of effective dimensionality", 2007 (EUSIPCO).
- I. M. Johnstone, "On the distribution of the largest eigenvalue in principal components
  analysis", 2001 (Annals of Statistics) — the Tracy–Widom scale used for the optional margin.

Definitions (Martin & Mahoney's notation)
-----------------------------------------
A weight matrix ``W`` is oriented as ``N x M`` with ``N >= M`` (transposed if it is wider than
tall), ``Q = N / M >= 1``. Its *correlation matrix* is ``X = W^T W / N`` (``M x M``), and the
*empirical spectral density* (ESD) is the set of its ``M`` eigenvalues ``λ_i = s_i^2 / N``, where
``s_i`` are the singular values of ``W``. ``esd`` diagonalizes the ``M x M`` Gram matrix ``WᵀW`` in
float64 (``eigvalsh``, 2-4x faster than an SVD, accurate to ~1e-16·λ_max); the squared singular
values (``svdvals``, accurate relative to each eigenvalue) are its reference form
(``method="svd"``), which the rank measures and the condition number use. WeightWatcher's ESD is
that of ``WᵀW`` itself (``normalize=False``).

Convolution kernels ``(out, in, *k)`` (``conv=``):

- ``"per_position"`` (default, Martin & Mahoney's handling): each of the ``P = prod(k)`` spatial
  positions gives an ``(out, in)`` matrix ``W_p = W[:, :, p]``; each is oriented and normalized as
  above and the ``P·M`` eigenvalues are pooled into one ESD. Equivalently, the layer is treated as
  the block-diagonal matrix ``diag(W_1, ..., W_P)``, whose singular values are the pooled ones; the
  rank measures use that block-diagonal matrix.
- ``"flatten"``: the kernel is reshaped to the ``(out, in·prod(k))`` matrix that an im2col
  convolution multiplies by (then oriented as above).

Power law (Clauset et al. 2009, continuous case): on the tail ``x_i >= x_min`` (``n`` points)
the maximum-likelihood exponent of ``p(x) ∝ x^(-α)`` is
``α̂ = 1 + n [Σ_i ln(x_i / x_min)]^(-1)`` with standard error ``σ = (α̂ - 1) / √n``. When ``x_min``
is not given it is chosen to minimize the Kolmogorov–Smirnov distance
``D = max_{x >= x_min} |S(x) - P(x)|`` between the tail's empirical CDF ``S`` and the fitted CDF
``P(x) = 1 - (x / x_min)^(1-α̂)``, over every distinct value that leaves at least ``min_tail``
points in the tail. Martin & Mahoney fit this to the ESD, ``ρ(λ) ∝ λ^(-α)``.

Marchenko–Pastur: if the entries of ``W`` are i.i.d. with variance ``σ²``, the ESD of
``X = W^T W / N`` tends to
``ρ(λ) = Q / (2π σ² λ) · √((λ+ - λ)(λ - λ-))`` on ``[λ-, λ+]``, ``λ± = σ² (1 ± 1/√Q)²``,
with mean ``σ²`` and second moment ``σ⁴ (1 + 1/Q)``. Eigenvalues above ``λ+`` are *spikes*.

WeightWatcher (C. H. Martin's ``weightwatcher`` package, version 0.7): ``power_law(...,
method="weightwatcher")`` reproduces its power-law fit (a one-sided KS distance, every eigenvalue
but the largest as ``x_min``, eigenvalues of ``WᵀW`` at or below 1e-5 dropped; see ``power_law``),
``quality_metrics`` its α-based metrics (Martin, Peng & Mahoney), ``fix_fingers`` its two finger
remedies, ``correlation_traps`` its randomized ESD and ``model_summary`` its ``analyze()`` table.
``lens.tail_compare`` holds Clauset et al.'s likelihood-ratio tests of the tail.

Rank measures of the singular values ``s_1 >= ... >= s_M`` of ``W``: stable rank
``‖W‖_F² / ‖W‖_2² = Σ s_i² / s_1²``; effective rank (Roy & Vetterli) ``exp(-Σ p_i ln p_i)`` with
``p_i = s_i / Σ_j s_j``; condition number ``s_1 / s_M``. These do not depend on the ``1/N``
normalization.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ._util import side_effect_free

__all__ = [
    "CONV_MODES",
    "CorrelationTraps",
    "ESD_METHODS",
    "MP_METHODS",
    "MPFit",
    "FINGER_FIXES",
    "POWER_LAW_METHODS",
    "PowerLawFit",
    "QUALITY_METRICS",
    "SUMMARY_AVERAGED",
    "SpectraSummary",
    "condition_number",
    "correlation_traps",
    "effective_rank",
    "esd",
    "layer_esds",
    "layer_spectra",
    "marchenko_pastur",
    "model_summary",
    "mp_density",
    "mp_edges",
    "power_law",
    "quality_metrics",
    "stable_rank",
]

CONV_MODES = ("per_position", "flatten")
MP_METHODS = ("mean", "median")

# ---------------------------------------------------------------------------------------------
# Weight matrices and their singular values


def _matrices(weight: Tensor, conv: str) -> Tensor:
    """The weight as a float64 batch ``(P, N, M)`` of matrices with ``N >= M``."""
    if conv not in CONV_MODES:
        raise unknown_name("conv handling", conv, CONV_MODES)
    if not isinstance(weight, Tensor):
        raise ShapeError(f"expected a weight Tensor, got {type(weight).__name__}")
    if weight.dim() < 2:
        raise ShapeError(
            f"a spectrum needs a weight matrix (>= 2-D), got shape {tuple(weight.shape)}; 1-D "
            "parameters (biases, norm scales) have no spectrum: skip parameters with dim() < 2"
        )
    if weight.numel() == 0:
        raise ShapeError(f"weight of shape {tuple(weight.shape)} is empty; pass a non-empty matrix")
    if weight.is_complex():
        raise ShapeError("complex weights are not supported; pass a real weight matrix")
    w = weight.detach().to(torch.float64)
    if w.dim() == 2:
        w = w.unsqueeze(0)
    elif conv == "per_position":
        out, inp = w.shape[:2]
        w = w.reshape(out, inp, -1).permute(2, 0, 1)
    else:
        w = w.reshape(w.shape[0], -1).unsqueeze(0)
    if w.shape[1] < w.shape[2]:
        w = w.transpose(1, 2)
    return w


def _singular_values(weight: Tensor, conv: str, *, gram: bool = False) -> tuple[Tensor, int, int]:
    """Pooled singular values (descending, float64) and the oriented per-matrix ``(N, M)``: the
    SVD of each matrix.

    ``gram=True`` trades accuracy of the small values for time: the square roots of the
    eigenvalues of ``WᵀW`` (M x M) instead of an SVD, 2-3x faster, with every eigenvalue of
    ``WᵀW`` accurate to about ``1e-16·s_max²`` absolutely, so the small singular values lose
    relative accuracy (a condition number would not survive it; the ESD, its tail and the
    stable rank do; tested against the SVD)."""
    w = _matrices(weight, conv)
    if not gram:
        s = torch.linalg.svdvals(w).reshape(-1)
    else:
        s = torch.linalg.eigvalsh(w.transpose(1, 2) @ w).clamp_min(0).sqrt().reshape(-1)
    return torch.sort(s, descending=True).values, w.shape[1], w.shape[2]


ESD_METHODS = ("gram", "svd")


def _gram_eigenvalues(weight: Tensor, conv: str) -> tuple[Tensor, int, int]:
    """Pooled eigenvalues of ``WᵀW`` (ascending, float64, clamped at 0) from ``eigvalsh`` of the
    ``M x M`` Gram matrices, and the oriented per-matrix ``(N, M)``."""
    w = _matrices(weight, conv)
    lam = torch.linalg.eigvalsh(w.transpose(1, 2) @ w).clamp_min(0).reshape(-1)
    return torch.sort(lam).values, w.shape[1], w.shape[2]


def esd(weight: Tensor, *, normalize: bool = True, conv: str = "per_position",
        method: str = "gram") -> Tensor:
    """Empirical spectral density: eigenvalues of ``X = W^T W / N`` for ``W`` oriented ``N x M``,
    ``N >= M``.

    Args:
        weight: ``(out, in)`` matrix or ``(out, in, *k)`` convolution kernel (any real dtype).
        normalize: divide by ``N`` (the larger dimension), as in Martin & Mahoney; ``False`` gives
            the eigenvalues of ``W^T W``, i.e. the squared singular values (WeightWatcher's ESD).
        conv: kernel handling, ``"per_position"`` (pool the ``prod(k)`` slices' eigenvalues) or
            ``"flatten"`` (the ``(out, in·prod(k))`` matrix); see the module docstring.
        method: ``"gram"`` (default, the fast form): ``eigvalsh`` of the ``M x M`` Gram matrix
            ``WᵀW`` in float64, 2-4x faster than an SVD; every eigenvalue is accurate to about
            ``1e-16·λ_max`` absolutely, so eigenvalues far below ``λ_max·1e-10`` lose relative
            accuracy (an exactly singular matrix gives tiny values, clamped at 0, instead of
            exact zeros). ``"svd"`` (the reference form): squared singular values
            (``torch.linalg.svdvals`` in float64), accurate relative to each eigenvalue.

    Returns:
        float64 tensor of shape ``(P·M,)`` on the weight's device, ascending (``P = 1`` for a
        matrix or ``conv="flatten"``), in the weight's units squared (per ``N`` if normalized).

    Raises:
        ShapeError: for weights with fewer than 2 dimensions or no elements.
        UnknownNameError: for an unknown ``conv`` or ``method``.
    """
    if method not in ESD_METHODS:
        raise unknown_name("ESD method", method, ESD_METHODS)
    if method == "gram":
        lam, n, _ = _gram_eigenvalues(weight, conv)
    else:
        s, n, _ = _singular_values(weight, conv)
        lam = s.flip(0) ** 2
    return lam / n if normalize else lam


def _stable_rank(s: Tensor) -> float:
    return 0.0 if s[0] == 0 else float((s**2).sum() / s[0] ** 2)


def _effective_rank(s: Tensor) -> float:
    if s[0] == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _condition_number(s: Tensor, n: int, dtype: torch.dtype) -> float:
    eps = torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps
    if s[0] == 0 or float(s[-1]) <= float(s[0]) * n * eps:
        return math.inf
    return float(s[0] / s[-1])


def stable_rank(weight: Tensor, *, conv: str = "per_position") -> float:
    """Stable rank ``‖W‖_F² / ‖W‖_2² = Σ s_i² / s_max²``, a number in ``[1, M]`` (0 for the zero
    matrix). A kernel with ``conv="per_position"`` is the block-diagonal matrix of its slices."""
    return _stable_rank(_singular_values(weight, conv)[0])


def effective_rank(weight: Tensor, *, conv: str = "per_position") -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(p))`` with ``p_i = s_i / Σ_j s_j`` and Shannon
    entropy ``H(p) = -Σ p_i ln p_i`` (``0 ln 0 = 0``); a number in ``[1, M]`` (0 for the zero
    matrix). A kernel with ``conv="per_position"`` is the block-diagonal matrix of its slices."""
    return _effective_rank(_singular_values(weight, conv)[0])


def condition_number(weight: Tensor, *, conv: str = "per_position") -> float:
    """Condition number ``s_max / s_min`` over the ``M`` singular values (``W`` oriented
    ``N x M``, ``N >= M``).

    Returns ``inf`` when ``W`` is numerically singular: ``s_min <= s_max · N · eps``, with ``eps``
    the machine epsilon of the weight's own dtype (NumPy's ``matrix_rank`` tolerance), and for the
    zero matrix. A kernel with ``conv="per_position"`` is the block-diagonal matrix of its slices.
    """
    s, n, _ = _singular_values(weight, conv)
    return _condition_number(s, n, weight.dtype)


# ---------------------------------------------------------------------------------------------
# Power law (Clauset, Shalizi & Newman 2009)


POWER_LAW_METHODS = ("csn", "weightwatcher")
FINGER_FIXES = ("clip_xmax", "xmin_peak")
# WeightWatcher 0.7's constants: eigenvalues of WᵀW at or below EVALS_THRESH are dropped before
# the fit; below SMALL_N values it fits a bias-corrected exponent on tails of at least 8 points.
WW_EVALS_THRESH = 1e-5
WW_SMALL_N = 20
WW_SMALL_N_MIN_TAIL = 8


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power-law fit of a tail; unpacks as ``(alpha, xmin, sigma, ks_distance)``.

    ``alpha``: MLE exponent of ``p(x) ∝ x^(-alpha)``; ``xmin``: lower end of the tail (units of
    the data); ``sigma``: standard error ``(alpha - 1) / √n_tail``; ``ks_distance``: KS distance
    between the tail's empirical CDF and the fitted CDF (in the fit's convention); ``n_tail``:
    points in the tail. With ``fix_fingers="clip_xmax"``: ``n_fingers`` largest values were
    dropped before this fit, and ``raw_alpha`` is the exponent without dropping any (NaN when
    ``fix_fingers`` was not asked for).
    """

    alpha: float
    xmin: float
    sigma: float
    ks_distance: float
    n_tail: int
    n_fingers: int = 0
    raw_alpha: float = math.nan

    def __iter__(self) -> Iterator[float]:
        return iter((self.alpha, self.xmin, self.sigma, self.ks_distance))


def _as_values(values: Tensor | Sequence[float] | np.ndarray, what: str) -> Tensor:
    x = values.detach() if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values))
    if x.dim() != 1:
        raise ShapeError(f"{what} must be 1-D, got shape {tuple(x.shape)}; pass a flat array")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ShapeError(f"{what} contain NaN or inf; remove them (or fix the weights) first")
    return x


def _power_law_plain(values: Sequence[float], *, min_tail: int = 10, min_log_spread: float = 1e-9) -> PowerLawFit:
    """The reference form of `power_law`'s ``xmin`` search, in plain Python (O(n²)): for each
    distinct positive value as ``xmin`` whose tail has at least ``min_tail`` points spread beyond
    ``min_log_spread``, the MLE ``α = 1 + m / Σ ln(x / xmin)`` and the KS distance
    ``D = max_k max((k+1)/m − P(x_k), P(x_k) − k/m)`` over the sorted tail (the empirical CDF
    just at and just below each point, ``P(x) = 1 − (x/xmin)^(1−α)``); the smallest ``D`` wins,
    the smallest ``xmin`` among ties."""
    x = sorted(float(v) for v in values if v > 0)
    best: PowerLawFit | None = None
    for xmin in sorted(set(x)):
        tail = [v for v in x if v >= xmin]
        m = len(tail)
        total = math.fsum(math.log(v / xmin) for v in tail)
        if m < min_tail or total <= 0 or math.log(tail[-1] / xmin) <= min_log_spread:
            continue
        alpha = 1 + m / total
        d = 0.0
        for k, v in enumerate(tail):
            cdf = 1 - (v / xmin) ** (1 - alpha)
            d = max(d, (k + 1) / m - cdf, cdf - k / m)
        if best is None or d < best.ks_distance:
            best = PowerLawFit(alpha, xmin, (alpha - 1) / math.sqrt(m), d, m)
    if best is None:
        raise ShapeError(f"no power-law fit: need at least min_tail={min_tail} positive values that are not all equal")
    return best


def _power_law_ww_plain(values: Sequence[float], *, evals_thresh: float = WW_EVALS_THRESH) -> PowerLawFit:
    """The reference form of ``power_law(method="weightwatcher")``, in plain Python (O(n²)).

    Keep the values ``> evals_thresh``, sorted ``x_0 <= ... <= x_{N-1}``. Every index
    ``i < N - 1`` (every value but the largest, ties included) is a candidate ``xmin = x_i`` with
    tail ``x_i..x_{N-1}`` of ``n = N - i`` points and ``s = Σ_{j>=i} ln(x_j / x_i)``:
    ``α = 1 + n / s`` (``1 + (n - 1) / s`` on tails of at least 8 points when ``N < 20``, other
    candidates skipped), and the one-sided KS distance ``D = max_{k<n} |1 − (x_{i+k}/x_i)^(1−α)
    − k/n|`` (the empirical CDF just below each point only). The first smallest ``D`` wins;
    a skipped candidate (``s <= 0``, or the small-N rules) has ``D = 1``. When ``N < 20`` and
    every candidate is skipped, the whole sample is the tail (``i = 0``)."""
    x = sorted(float(v) for v in values if v > evals_thresh)
    n_all = len(x)
    small = n_all < WW_SMALL_N
    best: PowerLawFit | None = None
    for i in range(n_all - 1):
        n = n_all - i
        s = math.fsum(math.log(v / x[i]) for v in x[i:])
        alpha = 1 + ((n - 1) if small else n) / s if s > (1e-12 if small else 0.0) else math.nan
        d = 1.0
        if alpha > 1 and (n >= WW_SMALL_N_MIN_TAIL or not small):
            d = max(abs(1 - (v / x[i]) ** (1 - alpha) - k / n) for k, v in enumerate(x[i:]))
        else:
            alpha = math.nan
        if best is None or d < best.ks_distance:
            best = PowerLawFit(alpha, x[i], (alpha - 1) / math.sqrt(n), d, n)
    if small and best is not None and math.isnan(best.alpha):  # no candidate: the whole sample
        s = math.fsum(math.log(v / x[0]) for v in x)
        alpha = 1 + (n_all - 1) / s if s > 1e-12 else math.nan
        d = max(abs(1 - (v / x[0]) ** (1 - alpha) - k / n_all) for k, v in enumerate(x))
        best = PowerLawFit(alpha, x[0], (alpha - 1) / math.sqrt(n_all), d, n_all)
    if best is None or math.isnan(best.alpha):
        raise ShapeError(f"no power-law fit: need at least 2 values > evals_thresh={evals_thresh:g} that are "
                         "not all equal")
    return best


def _ks_block(
    logs: Tensor, starts: Tensor, log_xmin: Tensor, alpha: Tensor, count: Tensor, offset: float = 0.5
) -> Tensor:
    """KS distances of candidate fits whose tails are ``logs[starts[r]:]`` (ascending).

    ``S`` jumps at each tail point: for its ``k``-th point (0-based) the empirical CDF is
    ``k/m`` just below and ``(k+1)/m`` at the point, so ``D = max_k max((k+1)/m - P, P - k/m)``
    (also right with ties: the extremes fall on the first and last of a tied run). With
    ``u = P - k/m`` that is ``max(u, 1/m - u) = |u - 1/(2m)| + 1/(2m)``, and
    ``u - 1/(2m) = 1 - (k + 1/2)/m - (x/x_min)^(1-α)``: one exp and a few passes per element.
    ``offset = 0`` gives WeightWatcher's one-sided ``max_k |P - k/m|`` instead (``offset = 1/2``:
    the two-sided distance above).
    """
    n = logs.numel()
    j0 = int(starts[0])
    f64 = torch.float64
    inv_m = 1.0 / count.to(f64)
    k = torch.arange(j0, n, device=logs.device, dtype=f64)[None, :] - starts.to(f64)[:, None]
    before_tail = k < 0
    # in place: two (rows, n - j0) float64 buffers per block
    power = (logs[None, j0:] - log_xmin[:, None]).mul_((1.0 - alpha)[:, None]).exp_()
    d = k.add_(offset).mul_(inv_m[:, None]).add_(power).sub_(1.0).abs_()
    d.masked_fill_(before_tail, 0.0)
    return d.amax(dim=1) + offset * inv_m


def _ks_scan(logs: Tensor, cand: Tensor, alpha: Tensor, count: Tensor, offset: float, max_block: int) -> Tensor:
    """`_ks_block` over the candidate start indices ``cand`` (ascending), in row blocks of at
    most ``max_block`` elements."""
    rows = max(1, max_block // max(1, logs.numel()))
    return torch.cat([
        _ks_block(logs, cand[i:i + rows], logs[cand[i:i + rows]], alpha[i:i + rows], count[i:i + rows], offset)
        for i in range(0, cand.numel(), rows)
    ]) if cand.numel() else logs.new_zeros(0)


def _suffix_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For sorted ``x``: ``ln x``, the tail sizes ``n - i`` and ``Σ_{j>=i} ln(x_j / x_i)``."""
    logs = x.log()
    count = x.numel() - torch.arange(x.numel(), device=x.device)
    # suffix sums, accumulated from the largest value down, so each one only sees its own tail
    suffix = logs.flip(0).cumsum(0).flip(0)
    return logs, count, suffix - count * logs


def _in_range(x: Tensor, xmin_range: tuple[float, float] | None) -> Tensor:
    if xmin_range is None:
        return torch.ones_like(x, dtype=torch.bool)
    return (x >= xmin_range[0]) & (x <= xmin_range[1])


def _fit_csn(x: Tensor, min_tail: int, min_log_spread: float, max_block: int,
             xmin_range: tuple[float, float] | None = None) -> PowerLawFit:
    """Clauset et al.'s scan over sorted positive ``x`` (see `_power_law_plain`)."""
    n = x.numel()
    if n < min_tail:
        raise ShapeError(
            f"no power-law fit: {n} positive value(s) < min_tail={min_tail}; pass more values or "
            "lower min_tail"
        )
    logs, count, denom = _suffix_stats(x)
    first = torch.ones(n, dtype=torch.bool, device=x.device)
    first[1:] = x[1:] != x[:-1]
    spread = logs[-1] - logs
    valid = first & (count >= min_tail) & (spread > min_log_spread) & (denom > 0) & _in_range(x, xmin_range)
    cand = torch.nonzero(valid).reshape(-1)
    if cand.numel() == 0:
        raise ShapeError(
            f"no power-law fit: {n} positive value(s), need at least min_tail={min_tail} that are "
            f"not all equal (relative spread > min_log_spread={min_log_spread:g})"
            + ("" if xmin_range is None else f" with xmin in [{xmin_range[0]:g}, {xmin_range[1]:g}]")
            + "; pass more values or lower min_tail"
        )
    alpha = 1.0 + count[cand] / denom[cand]
    ks = _ks_scan(logs, cand, alpha, count[cand], 0.5, max_block)
    best = int(torch.argmin(ks))  # first minimum: the smallest xmin among ties
    i, a, m = int(cand[best]), float(alpha[best]), int(count[cand[best]])
    return PowerLawFit(a, float(x[i]), (a - 1.0) / math.sqrt(m), float(ks[best]), m)


def _fit_ww(x: Tensor, max_block: int, xmin_range: tuple[float, float] | None = None) -> PowerLawFit:
    """WeightWatcher's scan over sorted ``x`` (already above the threshold; see `_power_law_ww_plain`)."""
    n = x.numel()
    if n < 2:
        raise ShapeError(f"no power-law fit: {n} value(s) above evals_thresh; need at least 2")
    logs, count, denom = _suffix_stats(x)
    logs, count, denom, xs = logs, count[:-1], denom[:-1], x[:-1]  # every value but the largest
    if n < WW_SMALL_N:
        valid = (count >= WW_SMALL_N_MIN_TAIL) & (denom > 1e-12)
        alpha = 1.0 + (count - 1) / denom
    else:
        valid = denom > 0
        alpha = 1.0 + count / denom
    valid &= (alpha > 1) & _in_range(xs, xmin_range)
    cand = torch.nonzero(valid).reshape(-1)
    ks = torch.ones(n - 1, dtype=torch.float64, device=x.device)
    ks[cand] = _ks_scan(logs, cand, alpha[cand], count[cand], 0.0, max_block)
    best = int(torch.argmin(ks))  # first minimum, as numpy's argmin
    if n < WW_SMALL_N and cand.numel() == 0 and float(denom[0]) > 1e-12:  # no candidate: the whole sample
        best, alpha = 0, 1.0 + (count - 1) / denom
        valid[0] = True
        ks[0] = _ks_scan(logs, cand.new_zeros(1), alpha[:1], count[:1], 0.0, max_block)[0]
    if not bool(valid[best]):
        raise ShapeError(
            f"no power-law fit: the {n} value(s) above evals_thresh give no candidate tail (all equal"
            + ("" if n >= WW_SMALL_N else f", or fewer than {WW_SMALL_N_MIN_TAIL} in every tail")
            + ("" if xmin_range is None else f", or none with xmin in [{xmin_range[0]:g}, {xmin_range[1]:g}]")
            + ")"
        )
    a, m = float(alpha[best]), int(count[best])
    return PowerLawFit(a, float(x[best]), (a - 1.0) / math.sqrt(m), float(ks[best]), m)


def _peak_range(x: Tensor, xmin_max: float | None) -> tuple[float, float]:
    """WeightWatcher's ``xmin_peak`` window: the left edge ``p`` of the fullest of 100 equal bins
    of ``log10 x`` (numpy's histogram: the last bin closed), as ``[0.95 p, xmin_max or 1.5 p]``."""
    u = x.log10()
    lo, hi = float(u[0]), float(u[-1])
    width = (hi - lo) / 100 if hi > lo else 1.0
    idx = ((u - lo) / width).floor().clamp(0, 99).long()
    peak = 10 ** (lo + int(torch.bincount(idx, minlength=100).argmax()) * width)
    top = 1.5 * peak if xmin_max is None else float(xmin_max)
    if not top >= 0.95 * peak:
        raise ConfigError(f"xmin_max={xmin_max} is below the ESD peak's window start {0.95 * peak:.4g}; "
                          "raise xmin_max or leave it None (1.5 x the peak)")
    return 0.95 * peak, top


def _clip_xmax(x: Tensor, fit, first_k: int, max_fingers: int, finger_thresh: float,
               min_alpha: float = 2.0) -> PowerLawFit:
    """WeightWatcher's ``clip_xmax``: refit without the ``k`` largest values for ``k = first_k,
    ..., max_fingers - 1``; the first refit whose α is more than ``finger_thresh`` below the
    unclipped α is taken (the ``k`` values were fingers); stop early once α <= ``min_alpha``."""
    raw = fit(x)
    for k in range(first_k, max_fingers):
        if x.numel() - k < 2:
            break
        try:
            f = fit(x[:-k])
        except ShapeError:
            break
        if f.alpha + finger_thresh < raw.alpha:
            return dataclasses.replace(f, n_fingers=k, raw_alpha=raw.alpha)
        if f.alpha <= min_alpha:
            break
    return dataclasses.replace(raw, raw_alpha=raw.alpha)


def power_law(
    eigenvalues: Tensor | Sequence[float] | np.ndarray,
    *,
    method: str = "csn",
    xmin: float | None = None,
    min_tail: int = 10,
    min_log_spread: float = 1e-9,
    evals_thresh: float = WW_EVALS_THRESH,
    fix_fingers: str | None = None,
    max_fingers: int = 10,
    finger_thresh: float = 1.0,
    xmin_max: float | None = None,
    max_block: int = 1 << 22,
) -> PowerLawFit:
    """Fit ``p(x) ∝ x^(-α)`` to the tail ``x >= xmin`` by maximum likelihood (Clauset et al.).

    Both methods take the continuous MLE ``α = 1 + n / Σ ln(x_i / xmin)`` on a tail of ``n``
    points and choose ``xmin`` by a Kolmogorov–Smirnov scan; they differ in the details:

    ================ ================================== ==========================================
    ``method``       ``"csn"`` (default)                ``"weightwatcher"`` (WeightWatcher 0.7)
    ================ ================================== ==========================================
    values kept      ``x > 0``                          ``x > evals_thresh`` (1e-5: in units of
                                                        ``WᵀW``'s eigenvalues, ``esd(W,
                                                        normalize=False)``, as WeightWatcher)
    xmin candidates  distinct values with a tail of     every value but the largest (ties too)
                     at least ``min_tail`` points
                     spread beyond ``min_log_spread``
    KS distance      two-sided: ``max_k max((k+1)/n -   one-sided: ``max_k |P(x_k) - k/n|``
                     P(x_k), P(x_k) - k/n)``            (the empirical CDF just below each point)
    small samples    —                                  fewer than 20 values: ``α = 1 + (n-1)/s``,
                                                        tails of at least 8 points
    ================ ================================== ==========================================

    with ``P(x) = 1 - (x / xmin)^(1-α)``; the first smallest distance wins in both. The one-sided
    distance is up to ``1/n`` smaller and favours shorter tails; on heavy-tailed weight spectra
    the two α differ by up to about 0.5 (issue 16). ``"weightwatcher"`` agrees with WeightWatcher
    0.7.7's ``analyze()`` α to 1e-6 (``benchmarks/lens_spectra.py``; its ``WWFit``, the default
    ``pl_package="ww"``, not the older ``powerlaw`` package it can also call).

    Args:
        eigenvalues: 1-D values (an ESD, or any positive sample).
        method: ``"csn"`` or ``"weightwatcher"``, see above.
        xmin: lower end of the tail (``"csn"`` only); ``None`` picks the KS-optimal one.
        min_tail: smallest tail size considered in the ``"csn"`` ``xmin`` search (>= 2); a given
            ``xmin`` only needs 2 points at or above it.
        min_log_spread: (``"csn"``) a tail with ``ln(x_max / x_min) <= min_log_spread`` is one
            value up to roundoff (e.g. the ESD of an orthogonal matrix) and is not fitted: its
            "alpha" (about ``1 / spread``) would be noise. ``layer_spectra`` passes
            ``max(1e-4, √eps)`` of the weight's dtype.
        evals_thresh: (``"weightwatcher"``) values at or below it are dropped.
        fix_fingers: WeightWatcher's remedies for "fingers", a few largest eigenvalues that stand
            apart and pull the scan to a tiny tail with a large α: ``"clip_xmax"`` refits without
            the ``k`` largest values, ``k = 2, ..., max_fingers - 1`` (``"csn"``: from ``k = 1``),
            and takes the first refit whose α is more than ``finger_thresh`` below the unclipped
            one, stopping once α <= 2 (``n_fingers = k``; WeightWatcher reports ``k - 1``, and
            replaces a ``max_fingers`` below half the ESD size by 10); ``"xmin_peak"`` restricts
            the ``xmin`` candidates to ``[0.95 p, xmin_max]`` (default ``1.5 p``) around the peak
            ``p`` of the ESD's histogram (100 bins of ``log10 x``; WeightWatcher hands
            ``(log10(0.95 p), 1.5 p)`` to the ``powerlaw`` package, mixing a log and a linear
            bound: we read both as values).
        max_fingers, finger_thresh, xmin_max: see ``fix_fingers``.
        max_block: memory knob, the most float64 elements in one KS block.

    Returns:
        ``PowerLawFit(alpha, xmin, sigma, ks_distance, n_tail, n_fingers, raw_alpha)``; unpacks
        as the first four.

    Cost of the ``xmin`` search (`_power_law_plain` and `_power_law_ww_plain` are the reference
    forms, Python loops over candidates and tail points): one sort, suffix sums of ``ln x`` give
    every candidate's α at once, then the KS distance of every (candidate, tail point) pair in
    blocks of ``max_block`` elements — ``O(n·C)`` time for ``n`` values and ``C <= n``
    candidates, ``O(max_block)`` memory, no Python loop over values (about 0.25 s for
    ``n = 5000`` on one CPU thread, 3 ms for ``n = 512``).

    Raises:
        ShapeError: non-1-D or non-finite input, or too few usable values for a fit.
        ConfigError: unknown option values, ``min_tail < 2``, ``xmin <= 0``, or ``xmin`` given
            with ``method="weightwatcher"`` or with ``fix_fingers``.
    """
    if method not in POWER_LAW_METHODS:
        raise unknown_name("power-law fit method", method, POWER_LAW_METHODS)
    if fix_fingers is not None and fix_fingers not in FINGER_FIXES:
        raise unknown_name("fix_fingers", fix_fingers, FINGER_FIXES)
    if min_tail < 2:
        raise ConfigError(f"min_tail must be >= 2, got {min_tail}")
    if not max_fingers >= 1 or not finger_thresh >= 0:
        raise ConfigError(f"max_fingers must be >= 1 and finger_thresh >= 0, got {max_fingers}, {finger_thresh}")
    if xmin is not None and (method != "csn" or fix_fingers is not None):
        raise ConfigError(
            "a fixed xmin works with method='csn' and no fix_fingers only; WeightWatcher's fit and the finger "
            "fixes choose xmin themselves: pass xmin=None"
        )
    x = _as_values(eigenvalues, "eigenvalues")
    if method == "weightwatcher":
        if not evals_thresh >= 0:
            raise ConfigError(f"evals_thresh must be >= 0, got {evals_thresh}")
        x = torch.sort(x[x > evals_thresh]).values

        def fit(v: Tensor, window: tuple[float, float] | None = None) -> PowerLawFit:
            return _fit_ww(v, max_block, window)
    else:
        x = torch.sort(x[x > 0]).values

        def fit(v: Tensor, window: tuple[float, float] | None = None) -> PowerLawFit:
            return _fit_csn(v, min_tail, min_log_spread, max_block, window)

    if xmin is not None:
        return _fixed_xmin(x, float(xmin), min_log_spread)
    if fix_fingers == "xmin_peak":
        if x.numel() == 0:
            raise ShapeError("no power-law fit: no usable values")
        return fit(x, _peak_range(x, xmin_max))
    if fix_fingers == "clip_xmax":
        return _clip_xmax(x, fit, 2 if method == "weightwatcher" else 1, max_fingers, finger_thresh)
    return fit(x)


def _fixed_xmin(x: Tensor, xmin: float, min_log_spread: float) -> PowerLawFit:
    if not xmin > 0:
        raise ConfigError(f"xmin must be > 0, got {xmin}; pass a positive lower end of the tail")
    tail = x[x >= xmin].log()
    m = tail.numel()
    log_xmin = math.log(xmin)
    denom = float((tail - log_xmin).sum()) if m else 0.0
    if m < 2 or denom <= 0 or float(tail[-1]) - log_xmin <= min_log_spread:
        raise ShapeError(
            f"only {m} value(s) >= xmin={xmin} (need at least 2, spread beyond "
            f"min_log_spread={min_log_spread:g}); lower xmin or pass more values"
        )
    alpha = 1.0 + m / denom
    one = torch.ones(1, dtype=torch.float64, device=x.device)
    ks = _ks_block(tail, torch.zeros(1, dtype=torch.long, device=x.device), one * log_xmin, one * alpha,
                   torch.full((1,), m, device=x.device))
    return PowerLawFit(alpha, xmin, (alpha - 1.0) / math.sqrt(m), float(ks[0]), m)


# ---------------------------------------------------------------------------------------------
# WeightWatcher's quality metrics (Martin, Peng & Mahoney 2021)

QUALITY_METRICS = ("norm", "log_norm", "spectral_norm", "log_spectral_norm", "alpha_weighted",
                   "log_alpha_norm", "stable_rank")


def quality_metrics(eigenvalues: Tensor | Sequence[float] | np.ndarray, alpha: float) -> dict[str, float]:
    """The α-based quality metrics of one layer (Martin, Peng & Mahoney 2021, arXiv:2002.06716),
    as WeightWatcher 0.7 computes them, from the ESD ``λ_i`` of ``X = WᵀW`` (not divided by ``N``:
    pass ``esd(W, normalize=False)``) and the layer's power-law exponent ``α``:

    - ``norm = Σ_i λ_i = ‖W‖_F²`` and ``log_norm = log10 ‖W‖_F²``;
    - ``spectral_norm = λ_max = ‖W‖_2²`` and ``log_spectral_norm = log10 λ_max``;
    - ``alpha_weighted = α̂ = α · log10 λ_max`` (the paper's weighted alpha);
    - ``log_alpha_norm = log10 Σ_i λ_i^α = log10 ‖X‖_α^α`` (the Schatten α-norm; every eigenvalue,
      none dropped), computed as a log-sum-exp so large α does not overflow;
    - ``stable_rank = Σ_i λ_i / λ_max``.

    A zero eigenvalue adds nothing (``0^α = 0`` for ``α > 0``); a NaN ``α`` gives NaN for the
    two α metrics. Raises ShapeError for an empty, negative, all-zero or non-finite ESD."""
    lam = _as_values(eigenvalues, "eigenvalues")
    if lam.numel() == 0 or bool((lam < 0).any()) or not bool((lam > 0).any()):
        raise ShapeError("quality metrics need a non-empty ESD of eigenvalues >= 0, not all zero (esd(W, "
                         "normalize=False))")
    norm = float(lam.sum())
    top = float(lam.max())
    alpha = float(alpha)
    pos = lam[lam > 0].log()
    log_alpha_norm = float(torch.logsumexp(alpha * pos, 0)) / math.log(10) if math.isfinite(alpha) else math.nan
    return {
        "norm": norm,
        "log_norm": math.log10(norm),
        "spectral_norm": top,
        "log_spectral_norm": math.log10(top),
        "alpha_weighted": alpha * math.log10(top),
        "log_alpha_norm": log_alpha_norm,
        "stable_rank": norm / top,
    }


# ---------------------------------------------------------------------------------------------
# Marchenko–Pastur


def _check_q(aspect_ratio: float) -> float:
    q = float(aspect_ratio)
    if not q >= 1.0 or not math.isfinite(q):
        raise ConfigError(
            f"aspect_ratio Q = N/M must be a finite number >= 1, got {aspect_ratio}; orient W as "
            "N x M with N >= M (esd does) and pass Q = N/M"
        )
    return q


def mp_edges(aspect_ratio: float, sigma2: float) -> tuple[float, float]:
    """Bulk edges ``(λ-, λ+) = σ² (1 ∓ 1/√Q)²`` of the ESD of ``X = W^T W / N``, ``Q = N/M >= 1``."""
    q = _check_q(aspect_ratio)
    r = 1.0 / math.sqrt(q)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


def mp_density(x: Tensor, aspect_ratio: float, sigma2: float) -> Tensor:
    """Marchenko–Pastur density ``ρ(λ) = Q / (2π σ² λ) · √((λ+ - λ)(λ - λ-))`` for ``λ-< λ <λ+``,
    0 elsewhere.

    Args:
        x: eigenvalue(s) of ``X = W^T W / N``, any shape.
        aspect_ratio: ``Q = N / M >= 1``.
        sigma2: entry variance ``σ² > 0`` of ``W``.

    Returns:
        Density (per unit eigenvalue), the shape of ``x``, float64 on ``x``'s device. It integrates
        to 1 (no mass at 0 since ``Q >= 1``; for ``Q = 1`` it diverges like ``λ^(-1/2)`` at 0).
    """
    if not sigma2 > 0:
        raise ConfigError(f"sigma2 must be > 0, got {sigma2}")
    q = _check_q(aspect_ratio)
    lo, hi = mp_edges(q, sigma2)
    x = torch.as_tensor(x).to(torch.float64)
    inside = (x > lo) & (x < hi)
    xs = torch.where(inside, x, torch.full_like(x, 0.5 * (lo + hi)))
    rho = q / (2 * math.pi * sigma2 * xs) * torch.sqrt((hi - xs) * (xs - lo))
    return torch.where(inside, rho, torch.zeros_like(rho))


def _mp_median(aspect_ratio: float, points: int = 1 << 14) -> float:
    """Median of the unit-variance MP law, by the midpoint rule in ``λ = a + h(1 - cos θ)``,
    ``h = (b - a)/2``, where ``ρ dλ = Q h² sin²θ / (2π λ) dθ`` is smooth (also at ``a = 0``)."""
    q = aspect_ratio
    a, b = mp_edges(q, 1.0)
    h = 0.5 * (b - a)
    theta = (torch.arange(points, dtype=torch.float64) + 0.5) * (math.pi / points)
    lam = a + h * (1.0 - torch.cos(theta))
    w = q * h * h * torch.sin(theta) ** 2 / (2 * math.pi * lam) * (math.pi / points)
    cdf = torch.cumsum(w, 0)
    cdf = cdf / cdf[-1]
    i = int(torch.searchsorted(cdf, torch.tensor(0.5, dtype=torch.float64)))
    # the cdf at lam[i] is reached at the right end of cell i; interpolate within the cell
    right = a + h * (1.0 - math.cos((i + 1) * math.pi / points))
    left = a + h * (1.0 - math.cos(i * math.pi / points))
    c0 = float(cdf[i - 1]) if i > 0 else 0.0
    frac = (0.5 - c0) / (float(cdf[i]) - c0)
    return left + frac * (right - left)


class MPFit(NamedTuple):
    """A Marchenko–Pastur bulk for an ESD.

    ``sigma2``: entry variance σ² (eigenvalue units); ``lambda_minus``/``lambda_plus``: bulk edges;
    ``threshold``: ``λ+`` plus the Tracy–Widom margin; ``n_spikes``: eigenvalues above
    ``threshold``; ``aspect_ratio``: ``Q = N/M``.
    """

    sigma2: float
    lambda_minus: float
    lambda_plus: float
    threshold: float
    n_spikes: int
    aspect_ratio: float

    def density(self, x: Tensor) -> Tensor:
        """The fitted MP density at ``x`` (see ``mp_density``)."""
        return mp_density(x, self.aspect_ratio, self.sigma2)


def marchenko_pastur(
    eigenvalues: Tensor | Sequence[float] | np.ndarray,
    *,
    aspect_ratio: float,
    sigma2: float | None = None,
    method: str = "mean",
    tw_margin: float = 0.0,
    matrix_size: int | None = None,
    max_iter: int = 100,
) -> MPFit:
    """Fit a Marchenko–Pastur bulk to an ESD of ``X = W^T W / N`` and count the spikes above it.

    Args:
        eigenvalues: 1-D ESD (e.g. ``esd(W)``).
        aspect_ratio: ``Q = N / M >= 1`` of the (oriented) matrix or of each pooled slice.
        sigma2: the entry variance σ²; ``None`` fits it to the bulk.
        method: how σ² is fitted, both iterated to a fixed point over the bulk
            ``B = {λ_i <= λ+(σ²)}``, starting from all eigenvalues:
            ``"mean"`` sets σ² = mean(B) (MP's mean is σ², and E[tr X] / M = σ² exactly at every
            size); ``"median"`` sets σ² = median(B) / m_Q, where m_Q is the median of the
            unit-σ² MP law (quadrature) — less pulled by spikes at the start, but the sample
            median of a finite ESD sits O(1/M) low (about 1% at M = 300).
        tw_margin: spikes are eigenvalues above ``λ+ + tw_margin · s_TW``, with the leading-order
            Tracy–Widom scale of the largest eigenvalue (Johnstone 2001, rescaled by ``1/N``)
            ``s_TW = σ² (1 + 1/√Q)^(4/3) / (√Q · M^(2/3))``. 0 (default, Martin & Mahoney) counts
            everything above ``λ+``; a pure-noise matrix then shows a spike with probability
            about 0.17 (TW1's mass above 0); TW1's 95% / 99% quantiles are 0.98 / 2.02.
        matrix_size: ``M`` for ``s_TW`` (default: the number of eigenvalues; pass the slice size
            for pooled convolution spectra).
        max_iter: cap on the fixed-point iterations.

    Returns:
        ``MPFit(sigma2, lambda_minus, lambda_plus, threshold, n_spikes, aspect_ratio)``.

    Raises:
        ConfigError: ``aspect_ratio < 1``, unknown ``method``, ``sigma2 <= 0``, negative margin.
        ShapeError: empty, non-1-D or non-finite eigenvalues.
    """
    if method not in MP_METHODS:
        raise unknown_name("Marchenko-Pastur fit method", method, MP_METHODS)
    if not tw_margin >= 0:
        raise ConfigError(f"tw_margin must be >= 0 (in Tracy-Widom units), got {tw_margin}")
    q = _check_q(aspect_ratio)
    lam = torch.sort(_as_values(eigenvalues, "eigenvalues")).values
    if lam.numel() == 0:
        raise ShapeError("no eigenvalues to fit; pass a non-empty ESD")
    if sigma2 is not None:
        if not sigma2 > 0:
            raise ConfigError(f"sigma2 must be > 0, got {sigma2}; or pass None to fit it")
        s2 = float(sigma2)
    else:
        m_q = _mp_median(q) if method == "median" else 1.0

        def estimate(bulk: Tensor) -> float:
            return float(bulk.mean()) if method == "mean" else float(bulk.quantile(0.5)) / m_q

        s2 = estimate(lam)
        n_bulk = lam.numel()
        for _ in range(max_iter):
            # the bulk only ever shrinks (λ+ falls with σ²), so this ends
            k = int(torch.searchsorted(lam, torch.tensor(mp_edges(q, s2)[1], dtype=lam.dtype,
                                                           device=lam.device), right=True))
            if k == n_bulk or k == 0:
                break
            n_bulk = k
            s2 = estimate(lam[:k])
    lo, hi = mp_edges(q, s2)
    m = lam.numel() if matrix_size is None else int(matrix_size)
    s_tw = s2 * (1 + 1 / math.sqrt(q)) ** (4 / 3) / (math.sqrt(q) * m ** (2 / 3))
    threshold = hi + tw_margin * s_tw
    n_spikes = int((lam > threshold).sum())
    return MPFit(s2, lo, hi, threshold, n_spikes, q)


# ---------------------------------------------------------------------------------------------
# Whole models

_NAN_FIT = {"alpha": math.nan, "alpha_sigma": math.nan, "xmin": math.nan, "ks_distance": math.nan}


def _weights(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    for name, p in model.named_parameters():
        if p.dim() >= 2 and p.numel() > 0 and p.is_floating_point():
            yield name, p.detach()


def layer_esds(
    model: nn.Module, *, normalize: bool = True, conv: str = "per_position"
) -> dict[str, Tensor]:
    """The ESD (``esd``) of every >= 2-D floating-point parameter, by ``named_parameters`` name:
    float64 ascending eigenvalue arrays on the parameters' devices, for storing losslessly.
    Side-effect free."""
    if conv not in CONV_MODES:
        raise unknown_name("conv handling", conv, CONV_MODES)
    with side_effect_free(model):
        return {name: esd(w, normalize=normalize, conv=conv) for name, w in _weights(model)}


def layer_spectra(
    model: nn.Module,
    *,
    min_size: int = 50,
    min_tail: int = 10,
    conv: str = "per_position",
    mp_method: str = "mean",
    tw_margin: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Spectral scalars of every >= 2-D floating-point parameter, by ``named_parameters`` name.

    Skip rule: a parameter whose ESD has fewer than ``min_size`` eigenvalues (``M``, or ``P·M``
    for a pooled kernel) is left out; ``min_size`` must be >= ``min_tail``. Where no power law
    can be fitted (fewer than ``min_tail`` distinct eigenvalues, or every candidate tail flat to
    within a relative ``max(1e-4, √eps)`` of the weight's dtype, as for an orthogonal matrix
    rounded to float32; real spectra span far more) the four fit entries are NaN.

    Per parameter (``W`` oriented ``N x M``, ESD of ``W^T W / N``):
        ``alpha``, ``alpha_sigma``, ``xmin``, ``ks_distance``: ``power_law(esd, min_tail=...)``;
        ``mp_sigma2``, ``n_spikes``: ``marchenko_pastur(esd, aspect_ratio=N/M, method=mp_method,
        tw_margin=...)``; ``stable_rank``, ``effective_rank``, ``condition_number``: as the
        functions of those names; ``spectral_norm``: ``‖W‖_2 = s_max`` (the largest over the
        slices of a pooled kernel; not divided by √N); ``log_spectral_norm``: ``log10 ‖W‖_2²``
        (Martin, Peng & Mahoney's log spectral norm; ``-inf`` for a zero matrix).

    Side-effect free: parameters, gradients, train/eval flags and RNG state are untouched.
    """
    if conv not in CONV_MODES:
        raise unknown_name("conv handling", conv, CONV_MODES)
    if mp_method not in MP_METHODS:
        raise unknown_name("Marchenko-Pastur fit method", mp_method, MP_METHODS)
    if min_size < min_tail:
        raise ConfigError(
            f"min_size={min_size} < min_tail={min_tail}: a power-law fit needs at least min_tail "
            "eigenvalues; raise min_size or lower min_tail"
        )
    out: dict[str, dict[str, float]] = {}
    with side_effect_free(model):
        for name, w in _weights(model):
            s, n, m = _singular_values(w, conv)
            if s.numel() < min_size:
                continue
            lam = torch.sort(s**2 / n).values
            try:
                spread = max(1e-4, math.sqrt(torch.finfo(w.dtype).eps))
                fit = power_law(lam, min_tail=min_tail, min_log_spread=spread)
                row = {"alpha": fit.alpha, "alpha_sigma": fit.sigma, "xmin": fit.xmin,
                       "ks_distance": fit.ks_distance}
            except ShapeError:
                row = dict(_NAN_FIT)
            mp = marchenko_pastur(lam, aspect_ratio=n / m, method=mp_method,
                                  tw_margin=tw_margin, matrix_size=m)
            spec = float(s[0])
            row.update(
                n_spikes=float(mp.n_spikes),
                mp_sigma2=mp.sigma2,
                stable_rank=_stable_rank(s),
                effective_rank=_effective_rank(s),
                condition_number=_condition_number(s, n, w.dtype),
                spectral_norm=spec,
                log_spectral_norm=2 * math.log10(spec) if spec > 0 else -math.inf,
            )
            out[name] = row
    return out


# ---------------------------------------------------------------------------------------------
# Correlation traps (WeightWatcher's randomized ESD)


class CorrelationTraps(NamedTuple):
    """Eigenvalues of the element-shuffled weight beyond the Marchenko–Pastur bulk.

    ``n_traps``: eigenvalues above ``threshold``, per replica (mean over ``replicas``);
    ``threshold``: ``λ+`` plus the Tracy–Widom margin; ``mp``: the bulk fitted to the randomized
    ESD; ``eigenvalues``: the pooled randomized ESD (of ``W_rand^T W_rand / N``, ascending);
    ``replicas``: shuffles drawn."""

    n_traps: float
    threshold: float
    mp: MPFit
    eigenvalues: Tensor
    replicas: int


def correlation_traps(
    weight: Tensor,
    *,
    generator: torch.Generator | None = None,
    tw_margin: float | None = None,
    replicas: int | None = None,
    conv: str = "per_position",
) -> CorrelationTraps:
    """Correlation traps (Martin & Mahoney; WeightWatcher's ``randomize=True``): shuffle the entries
    of ``W`` (each slice of a pooled kernel on its own), which destroys every correlation between
    them, and look at the ESD of the shuffled matrix. Its bulk is Marchenko–Pastur whatever the
    entries' distribution (if they have a variance); an eigenvalue beyond the bulk edge can only
    come from a few unusually large entries, which "trap" the layer's correlations: a *trap*.

    The bulk of the randomized ESD (of ``X = W_rand^T W_rand / N``) is fitted by
    ``marchenko_pastur(method="mean")``; a trap is an eigenvalue above
    ``threshold = λ+ + √(σ² s_TW)`` with ``s_TW = σ² (1 + 1/√Q)^(4/3) / (√Q M^(2/3))`` the
    Tracy–Widom scale (see ``marchenko_pastur``) — WeightWatcher's margin ``λ+ + √TW``, written
    in units where ``σ² = 1`` (it rescales the ESD to mean 1 and fits σ by a kernel density; we
    fit σ² to the bulk's mean). At ``Q = 2, M = 512`` the margin is about 6.7 Tracy–Widom scales,
    so a Gaussian matrix shows no trap. ``tw_margin`` replaces it by ``λ+ + tw_margin · s_TW``.

    Args:
        weight: ``(out, in)`` matrix or ``(out, in, *k)`` kernel.
        generator: for the shuffles (default: seeded with 0; the global RNG is never used).
        tw_margin: see above; ``None`` for WeightWatcher's margin.
        replicas: shuffles drawn; ``None``: 5 when the ESD has fewer than 100 eigenvalues (as
            WeightWatcher), else 1. ``n_traps`` is the count per replica.
        conv: kernel handling (see ``esd``).

    Raises:
        ShapeError / UnknownNameError: as ``esd``; ConfigError: ``replicas < 1``, ``tw_margin < 0``.
    """
    w = _matrices(weight, conv)
    p, n, m = w.shape
    if replicas is None:
        replicas = 5 if p * m < 100 else 1
    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1, got {replicas}")
    if tw_margin is not None and not tw_margin >= 0:
        raise ConfigError(f"tw_margin must be >= 0 (Tracy-Widom units) or None, got {tw_margin}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    flat = w.reshape(p, -1)
    lams = []
    for _ in range(replicas):
        perm = torch.stack([torch.randperm(n * m, generator=gen) for _ in range(p)]).to(w.device)
        shuffled = torch.gather(flat, 1, perm).reshape(p, n, m)
        lams.append(torch.linalg.eigvalsh(shuffled.transpose(1, 2) @ shuffled).clamp_min(0).reshape(-1) / n)
    lam = torch.sort(torch.cat(lams)).values
    q = n / m
    mp = marchenko_pastur(lam, aspect_ratio=q, matrix_size=m)
    s_tw = mp.sigma2 * (1 + 1 / math.sqrt(q)) ** (4 / 3) / (math.sqrt(q) * m ** (2 / 3))
    margin = math.sqrt(mp.sigma2 * s_tw) if tw_margin is None else tw_margin * s_tw
    threshold = mp.lambda_plus + margin
    return CorrelationTraps(float((lam > threshold).sum()) / replicas, threshold, mp, lam, replicas)


# ---------------------------------------------------------------------------------------------
# A whole model, per layer and averaged (WeightWatcher's analyze() and get_summary())

SUMMARY_AVERAGED = ("alpha", "alpha_weighted", "log_norm", "log_alpha_norm", "log_spectral_norm", "stable_rank")
OVER_TRAINED_ALPHA, UNDER_TRAINED_ALPHA = 2.0, 6.0


@dataclass(frozen=True)
class SpectraSummary:
    """Per-layer rows (dicts, in ``named_parameters`` order) and their average (the mean of each
    of ``SUMMARY_AVERAGED`` over the layers where it is finite, as WeightWatcher's
    ``get_summary()``, which averages the same metrics)."""

    layers: list[dict[str, float | int | str]]
    average: dict[str, float]


def model_summary(
    model: nn.Module,
    *,
    method: str = "weightwatcher",
    fix_fingers: str | None = None,
    randomize: bool = False,
    min_evals: int = 8,
    conv: str = "per_position",
    generator: torch.Generator | None = None,
) -> SpectraSummary:
    """Spectral quality of every >= 2-D floating-point parameter with at least ``min_evals``
    eigenvalues (WeightWatcher's default), as WeightWatcher's ``analyze()`` table:

    ``name``, ``N``, ``M`` (oriented shape; a kernel's slices pooled), ``n_evals``; the power law
    ``power_law(esd(W, normalize=False), method=method, fix_fingers=...)``: ``alpha``, ``xmin``,
    ``ks_distance``, ``alpha_sigma``, ``n_tail`` (and ``n_fingers``, ``raw_alpha`` with
    ``fix_fingers``); ``quality_metrics``: ``log_norm``, ``log_spectral_norm``,
    ``alpha_weighted``, ``log_alpha_norm``, ``stable_rank``; ``mp_sigma2`` and ``n_spikes``
    (``marchenko_pastur`` of the ESD of ``WᵀW/N``); ``num_traps`` with ``randomize=True``
    (``correlation_traps``, one more eigen-decomposition per layer); ``warning``:
    ``"over-trained"`` for ``α < 2``, ``"under-trained"`` for ``α > 6`` (WeightWatcher's
    thresholds), else ``""``. A layer whose tail cannot be fitted has NaN fit entries and
    ``warning = "fit failed"``. Side-effect free.
    """
    if method not in POWER_LAW_METHODS:
        raise unknown_name("power-law fit method", method, POWER_LAW_METHODS)
    if conv not in CONV_MODES:
        raise unknown_name("conv handling", conv, CONV_MODES)
    if min_evals < 2:
        raise ConfigError(f"min_evals must be >= 2, got {min_evals}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    rows: list[dict[str, float | int | str]] = []
    with side_effect_free(model):
        for name, w in _weights(model):
            lam, n, m = _gram_eigenvalues(w, conv)
            if lam.numel() < min_evals:
                continue
            row: dict[str, float | int | str] = {"name": name, "N": n, "M": m, "n_evals": lam.numel()}
            try:
                fit = power_law(lam, method=method, fix_fingers=fix_fingers)
                row.update(alpha=fit.alpha, xmin=fit.xmin, ks_distance=fit.ks_distance, alpha_sigma=fit.sigma,
                           n_tail=fit.n_tail)
                if fix_fingers == "clip_xmax":
                    row.update(n_fingers=fit.n_fingers, raw_alpha=fit.raw_alpha)
                alpha = fit.alpha
            except ShapeError:
                row.update(alpha=math.nan, xmin=math.nan, ks_distance=math.nan, alpha_sigma=math.nan, n_tail=0)
                alpha = math.nan
            if bool((lam > 0).any()):
                row.update({k: v for k, v in quality_metrics(lam, alpha).items() if k not in ("norm", "spectral_norm")})
            mp = marchenko_pastur(lam / n, aspect_ratio=n / m, matrix_size=m)
            row.update(mp_sigma2=mp.sigma2, n_spikes=mp.n_spikes)
            if randomize:
                row["num_traps"] = correlation_traps(w, generator=gen, conv=conv).n_traps
            row["warning"] = ("fit failed" if math.isnan(alpha) else "over-trained" if alpha < OVER_TRAINED_ALPHA
                              else "under-trained" if alpha > UNDER_TRAINED_ALPHA else "")
            rows.append(row)
    average = {}
    for key in SUMMARY_AVERAGED:
        vals = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        if vals:
            average[key] = math.fsum(vals) / len(vals)
    return SpectraSummary(rows, average)
