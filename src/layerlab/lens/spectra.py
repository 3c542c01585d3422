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
``s_i`` are the singular values of ``W``. The eigenvalues are computed as squared singular values
(``torch.linalg.svdvals`` in float64), which is more accurate than diagonalizing ``X``.

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

Rank measures of the singular values ``s_1 >= ... >= s_M`` of ``W``: stable rank
``‖W‖_F² / ‖W‖_2² = Σ s_i² / s_1²``; effective rank (Roy & Vetterli) ``exp(-Σ p_i ln p_i)`` with
``p_i = s_i / Σ_j s_j``; condition number ``s_1 / s_M``. These do not depend on the ``1/N``
normalization.
"""
from __future__ import annotations

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
    "MP_METHODS",
    "MPFit",
    "PowerLawFit",
    "condition_number",
    "effective_rank",
    "esd",
    "layer_esds",
    "layer_spectra",
    "marchenko_pastur",
    "mp_density",
    "mp_edges",
    "power_law",
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


def esd(weight: Tensor, *, normalize: bool = True, conv: str = "per_position") -> Tensor:
    """Empirical spectral density: eigenvalues of ``X = W^T W / N`` for ``W`` oriented ``N x M``,
    ``N >= M``.

    Args:
        weight: ``(out, in)`` matrix or ``(out, in, *k)`` convolution kernel (any real dtype).
        normalize: divide by ``N`` (the larger dimension), as in Martin & Mahoney; ``False`` gives
            the eigenvalues of ``W^T W``, i.e. the squared singular values.
        conv: kernel handling, ``"per_position"`` (pool the ``prod(k)`` slices' eigenvalues) or
            ``"flatten"`` (the ``(out, in·prod(k))`` matrix); see the module docstring.

    Returns:
        float64 tensor of shape ``(P·M,)`` on the weight's device, ascending (``P = 1`` for a
        matrix or ``conv="flatten"``), in the weight's units squared (per ``N`` if normalized).

    Raises:
        ShapeError: for weights with fewer than 2 dimensions or no elements.
        UnknownNameError: for an unknown ``conv``.
    """
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


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power-law fit of a tail; unpacks as ``(alpha, xmin, sigma, ks_distance)``.

    ``alpha``: MLE exponent of ``p(x) ∝ x^(-alpha)``; ``xmin``: lower end of the tail (units of
    the data); ``sigma``: standard error ``(alpha - 1) / √n_tail``; ``ks_distance``: KS distance
    between the tail's empirical CDF and the fitted CDF; ``n_tail``: points with ``x >= xmin``.
    """

    alpha: float
    xmin: float
    sigma: float
    ks_distance: float
    n_tail: int

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


def _ks_block(
    logs: Tensor, starts: Tensor, log_xmin: Tensor, alpha: Tensor, count: Tensor
) -> Tensor:
    """KS distances of candidate fits whose tails are ``logs[starts[r]:]`` (ascending).

    ``S`` jumps at each tail point: for its ``k``-th point (0-based) the empirical CDF is
    ``k/m`` just below and ``(k+1)/m`` at the point, so ``D = max_k max((k+1)/m - P, P - k/m)``
    (also right with ties: the extremes fall on the first and last of a tied run). With
    ``u = P - k/m`` that is ``max(u, 1/m - u) = |u - 1/(2m)| + 1/(2m)``, and
    ``u - 1/(2m) = 1 - (k + 1/2)/m - (x/x_min)^(1-α)``: one exp and a few passes per element.
    """
    n = logs.numel()
    j0 = int(starts[0])
    f64 = torch.float64
    inv_m = 1.0 / count.to(f64)
    k = torch.arange(j0, n, device=logs.device, dtype=f64)[None, :] - starts.to(f64)[:, None]
    before_tail = k < 0
    # in place: two (rows, n - j0) float64 buffers per block
    power = (logs[None, j0:] - log_xmin[:, None]).mul_((1.0 - alpha)[:, None]).exp_()
    d = k.add_(0.5).mul_(inv_m[:, None]).add_(power).sub_(1.0).abs_()
    d.masked_fill_(before_tail, 0.0)
    return d.amax(dim=1) + 0.5 * inv_m


def power_law(
    eigenvalues: Tensor | Sequence[float] | np.ndarray,
    *,
    xmin: float | None = None,
    min_tail: int = 10,
    min_log_spread: float = 1e-9,
    max_block: int = 1 << 22,
) -> PowerLawFit:
    """Fit ``p(x) ∝ x^(-α)`` to the tail ``x >= xmin`` by maximum likelihood (Clauset et al.).

    Args:
        eigenvalues: 1-D values (an ESD, or any positive sample). Values ``<= 0`` are dropped
            (a power law lives on ``x > 0``; an ESD's zero modes are not part of its tail).
        xmin: lower end of the tail; ``None`` picks the KS-optimal one among the distinct values
            that leave at least ``min_tail`` points in the tail.
        min_tail: smallest tail size considered in the ``xmin`` search (>= 2); a given ``xmin``
            only needs 2 points at or above it.
        min_log_spread: a tail with ``ln(x_max / x_min) <= min_log_spread`` is one value up to
            roundoff (e.g. the ESD of an orthogonal matrix) and is not fitted: its "alpha"
            (about ``1 / spread``) would be noise. ``layer_spectra`` passes
            ``max(1e-4, √eps)`` of the weight's dtype.
        max_block: memory knob, the most float64 elements in one KS block.

    Returns:
        ``PowerLawFit(alpha, xmin, sigma, ks_distance, n_tail)``; unpacks as the first four.

    Cost of the ``xmin`` search (`_power_law_plain` is its reference form, a Python loop over
    candidates and tail points): one sort, suffix sums of ``ln x`` give every candidate's α at
    once, then the KS distance of every (candidate, tail point) pair in blocks of ``max_block``
    elements — ``O(n·C)`` time for ``n`` values and ``C <= n`` candidates, ``O(max_block)`` memory,
    no Python loop over values (about 0.25 s for ``n = 5000`` on one CPU thread).

    Raises:
        ShapeError: non-1-D or non-finite input, or too few positive values for a fit.
        ConfigError: ``min_tail < 2`` or ``xmin <= 0``.
    """
    if min_tail < 2:
        raise ConfigError(f"min_tail must be >= 2, got {min_tail}")
    x = _as_values(eigenvalues, "eigenvalues")
    x = torch.sort(x[x > 0]).values
    logs = x.log()
    if xmin is not None:
        if not xmin > 0:
            raise ConfigError(f"xmin must be > 0, got {xmin}; pass a positive lower end of the tail")
        tail = logs[x >= xmin]
        m = tail.numel()
        log_xmin = math.log(xmin)
        denom = float((tail - log_xmin).sum()) if m else 0.0
        if m < 2 or denom <= 0 or float(tail[-1]) - log_xmin <= min_log_spread:
            raise ShapeError(
                f"only {m} value(s) >= xmin={xmin} (need at least 2, spread beyond "
                f"min_log_spread={min_log_spread:g}); lower xmin or pass more values"
            )
        alpha = 1.0 + m / denom
        ks = _ks_block(
            tail,
            torch.zeros(1, dtype=torch.long, device=x.device),
            torch.full((1,), log_xmin, dtype=torch.float64, device=x.device),
            torch.full((1,), alpha, dtype=torch.float64, device=x.device),
            torch.full((1,), m, device=x.device),
        )
        return PowerLawFit(alpha, float(xmin), (alpha - 1.0) / math.sqrt(m), float(ks[0]), m)

    n = x.numel()
    if n < min_tail:
        raise ShapeError(
            f"no power-law fit: {n} positive value(s) < min_tail={min_tail}; pass more values or "
            "lower min_tail"
        )
    idx = torch.arange(n, device=x.device)
    count = n - idx
    # suffix sums, accumulated from the largest value down, so each one only sees its own tail
    suffix = logs.flip(0).cumsum(0).flip(0)
    denom = suffix - count * logs
    first = torch.ones(n, dtype=torch.bool, device=x.device)
    first[1:] = x[1:] != x[:-1]
    spread = logs[-1] - logs
    valid = first & (count >= min_tail) & (spread > min_log_spread) & (denom > 0)
    cand = idx[valid]
    if cand.numel() == 0:
        raise ShapeError(
            f"no power-law fit: {n} positive value(s), need at least min_tail={min_tail} that are "
            f"not all equal (relative spread > min_log_spread={min_log_spread:g}); pass more "
            "values or lower min_tail"
        )
    alpha = 1.0 + count[cand] / denom[cand]
    rows = max(1, max_block // n)
    ks = torch.cat([
        _ks_block(logs, cand[i:i + rows], logs[cand[i:i + rows]], alpha[i:i + rows],
                  count[cand[i:i + rows]])
        for i in range(0, cand.numel(), rows)
    ])
    best = int(torch.argmin(ks))  # first minimum: the smallest xmin among ties
    i, a, m = int(cand[best]), float(alpha[best]), int(count[cand[best]])
    return PowerLawFit(a, float(x[i]), (a - 1.0) / math.sqrt(m), float(ks[best]), m)


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
