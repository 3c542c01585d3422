"""Neural collapse metrics NC1–NC4 and the simplex equiangular tight frame.

Papers
------
- Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal phase of deep learning
  training", PNAS 2020, arXiv:2008.08186 (NC1–NC4; equinorm, equiangularity, NC3 distance,
  NCC mismatch).
- Zhu, Ding, Zhou, Li, You, Sulam & Qu, "A Geometric Analysis of Neural Collapse with
  Unconstrained Features", NeurIPS 2021, arXiv:2105.02375 (NC1 and the normalized ETF distances).

Notation: N samples hᵢ ∈ ℝᵈ with labels yᵢ ∈ {0, …, C − 1}; class means μ_c; global mean
μ_G = (1/N) Σᵢ hᵢ (Papyan: the mean over all samples; equal to the mean of the class means when
classes are balanced); M̃ = [μ_c − μ_G] ∈ ℝ^{d×C}; classifier W ∈ ℝ^{C×d} (rows w_c), bias b.
ETF reference E = (I_C − 11ᵀ/C)/√(C − 1) (unit Frobenius norm).

- Σ_W = (1/N) Σᵢ (hᵢ − μ_{yᵢ})(hᵢ − μ_{yᵢ})ᵀ,  Σ_B = (1/C) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ = M̃M̃ᵀ/C.
- ``nc1`` = tr(Σ_W Σ_B^†)/C (Papyan; Zhu NC1). Σ_B^† is applied through the thin SVD of M̃, so no
  d×d matrix is formed; singular values below max(d, C)·ε·s_max are treated as 0.
- ``nc2`` = ‖M̃ᵀM̃/‖M̃ᵀM̃‖_F − E‖_F: distance of the centered means' Gram to a simplex ETF.
  ``nc2_classifier`` = ‖WWᵀ/‖WWᵀ‖_F − E‖_F (Zhu et al.'s NC2, which is stated on W).
- ``equinorm_means`` / ``equinorm_classifier`` = Std_c(‖μ_c − μ_G‖)/Avg_c(‖μ_c − μ_G‖) and the
  same for ‖w_c‖ (Papyan et al.); ``equiangular_means`` = Std_{c≠c'} cos∠(μ̃_c, μ̃_c');
  ``max_angle_means`` = Avg_{c≠c'} |cos∠(μ̃_c, μ̃_c') + 1/(C − 1)| (maximal-angle equiangularity). Std is the population
  standard deviation (divisor = count).
- ``nc3`` = ‖W/‖W‖_F − M̃ᵀ/‖M̃‖_F‖²_F (Papyan et al., self-duality; in [0, 4]).
  ``nc3_etf`` = ‖WM̃/‖WM̃‖_F − E‖_F (Zhu et al.'s NC3).
- ``nc4`` = fraction of samples with argmax_c(⟨w_c, hᵢ⟩ + b_c) ≠ argmin_c ‖hᵢ − μ_c‖
  (Papyan et al., mismatch between the classifier and the nearest-class-centre rule).

Under exact neural collapse (hᵢ = μ_{yᵢ}, M̃ a simplex ETF, W = λM̃ᵀ, b = −Wμ_G) every metric is
0. Computed in float64; inputs are detached and not modified. Cost O(N d C).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from layerlab.errors import ConfigError, ShapeError

__all__ = ["metrics", "simplex_etf"]


def _etf_reference(c: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    eye = torch.eye(c, dtype=dtype, device=device)
    return (eye - 1.0 / c) / math.sqrt(c - 1)


def _unit_fro(m: Tensor) -> Tensor:
    return m / torch.linalg.matrix_norm(m)


def _std_over_mean(v: Tensor) -> float:
    return float(v.std(correction=0) / v.mean())


@torch.no_grad()
def metrics(
    features: Tensor,
    labels: Tensor,
    classifier_weight: Tensor,
    classifier_bias: Tensor | None = None,
) -> dict[str, float]:
    """Neural collapse metrics of last-layer ``features`` (N, d) with integer ``labels`` (N,) in
    [0, C), for the linear classifier ``classifier_weight`` (C, d) and optional bias (C,).

    Every class must have at least one sample. Returns a dict of floats (dimensionless):
    nc1, nc2, nc2_classifier, nc3, nc3_etf, nc4, equinorm_means, equinorm_classifier,
    equiangular_means, max_angle_means — definitions in the module docstring.
    """
    if not (isinstance(features, Tensor) and features.ndim == 2):
        raise ShapeError(f"features must be (N, d); got shape {getattr(features, 'shape', None)}")
    n, d = features.shape
    if not (isinstance(labels, Tensor) and labels.shape == (n,)):
        raise ShapeError(f"labels must be (N,) = ({n},); got {getattr(labels, 'shape', None)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ShapeError(f"labels must be an integer tensor of class indices; got {labels.dtype}")
    w_in = classifier_weight
    if not (isinstance(w_in, Tensor) and w_in.ndim == 2 and w_in.shape[1] == d):
        raise ShapeError(
            f"classifier_weight must be (C, d) with d = {d}; got {getattr(w_in, 'shape', None)}"
        )
    c = w_in.shape[0]
    if c < 2:
        raise ShapeError(f"neural collapse needs C ≥ 2 classes; classifier_weight has {c} rows")
    if classifier_bias is not None and tuple(classifier_bias.shape) != (c,):
        raise ShapeError(f"classifier_bias must be (C,) = ({c},); got {tuple(classifier_bias.shape)}")

    dev, f64 = features.device, torch.float64
    h = features.detach().to(f64)
    y = labels.detach().to(dev, torch.long)
    w = w_in.detach().to(dev, f64)
    if n == 0 or int(y.min()) < 0 or int(y.max()) >= c:
        raise ShapeError(f"labels must lie in [0, {c}) (C = rows of classifier_weight)")
    if not (bool(torch.isfinite(h).all()) and bool(torch.isfinite(w).all())):
        raise ConfigError("features or classifier_weight contain non-finite values (nan/inf)")
    counts = torch.bincount(y, minlength=c)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ShapeError(f"classes {missing} have no samples; every class needs at least one")

    sums = torch.zeros(c, d, dtype=f64, device=dev).index_add_(0, y, h)
    means = sums / counts[:, None].to(f64)  # (C, d): μ_c
    mu_g = h.mean(0)
    mt = means - mu_g  # (C, d) = M̃ᵀ
    within = h - means[y]  # (N, d): hᵢ − μ_{yᵢ}

    # NC1: Σ_B = M̃M̃ᵀ/C = U S² Uᵀ/C ⇒ Σ_B^† = C U S⁻² Uᵀ, so
    # tr(Σ_W Σ_B^†)/C = Σ_k s_k⁻² u_kᵀ Σ_W u_k over the nonzero singular values.
    u, s, _ = torch.linalg.svd(mt.T, full_matrices=False)
    keep = s > s.max() * max(d, c) * torch.finfo(f64).eps
    u, s = u[:, keep], s[keep]
    proj_var = (within @ u).square().sum(0) / n  # u_kᵀ Σ_W u_k
    nc1 = float((proj_var / s.square()).sum())

    etf = _etf_reference(c, f64, dev)
    gram_m = mt @ mt.T
    nc2 = float(torch.linalg.matrix_norm(_unit_fro(gram_m) - etf))
    nc2_w = float(torch.linalg.matrix_norm(_unit_fro(w @ w.T) - etf))
    nc3 = float(torch.linalg.matrix_norm(_unit_fro(w) - _unit_fro(mt)).square())
    nc3_etf = float(torch.linalg.matrix_norm(_unit_fro(w @ mt.T) - etf))

    norms_m = mt.norm(dim=1)
    cos = gram_m / (norms_m[:, None] * norms_m[None, :])
    off = ~torch.eye(c, dtype=torch.bool, device=dev)
    cos_off = cos[off]

    logits = h @ w.T
    if classifier_bias is not None:
        logits = logits + classifier_bias.detach().to(dev, f64)
    # argmin_c ‖h − μ_c‖² = argmin_c (‖μ_c‖² − 2⟨h, μ_c⟩)
    ncc = ((means.square().sum(1))[None, :] - 2 * h @ means.T).argmin(1)
    nc4 = float((logits.argmax(1) != ncc).to(f64).mean())

    return {
        "nc1": nc1,
        "nc2": nc2,
        "nc2_classifier": nc2_w,
        "nc3": nc3,
        "nc3_etf": nc3_etf,
        "nc4": nc4,
        "equinorm_means": _std_over_mean(norms_m),
        "equinorm_classifier": _std_over_mean(w.norm(dim=1)),
        "equiangular_means": float(cos_off.std(correction=0)),
        "max_angle_means": float((cos_off + 1.0 / (c - 1)).abs().mean()),
    }


def simplex_etf(
    C: int,
    d: int,
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """A randomly oriented simplex ETF: C vectors in ℝᵈ as rows of a (C, d) tensor.

    Rows m_c satisfy ‖m_c‖ = ``scale``, ⟨m_c, m_c'⟩ = −scale²/(C − 1) for c ≠ c', Σ_c m_c = 0;
    i.e. MMᵀ = scale²·C/(C − 1)·(I_C − 11ᵀ/C). Built as scale·√(C/(C − 1))·V Uᵀ with V (C, C − 1)
    an orthonormal basis of 1^⊥ and U (d, C − 1) a random partial orthogonal matrix (Papyan's
    M* = √(C/(C−1)) U (I − 11ᵀ/C) up to the choice of basis). Needs C ≥ 2 and d ≥ C − 1. The
    orientation is drawn on the CPU from ``generator`` (default: a fresh generator seeded 0, so the
    result is reproducible and the global RNG is untouched).
    """
    if C < 2:
        raise ConfigError(f"a simplex ETF needs C ≥ 2 vectors, got C = {C}")
    if d < C - 1:
        raise ShapeError(f"a simplex ETF of C = {C} vectors needs d ≥ C − 1 = {C - 1}, got d = {d}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    f64 = torch.float64
    centering = torch.eye(C, dtype=f64) - 1.0 / C
    v, _ = torch.linalg.qr(centering[:, : C - 1])  # orthonormal basis of 1^⊥
    g = torch.randn(d, C - 1, generator=generator, dtype=f64, device=generator.device)
    u, r = torch.linalg.qr(g.cpu())
    u = u * torch.sign(torch.diagonal(r))  # a Haar-distributed orientation
    m = scale * math.sqrt(C / (C - 1)) * v @ u.T
    return m.to(device=device, dtype=dtype)
