r"""The Similarity-Distance-Magnitude (SDM) output activation: a softmax whose base is set by
Similarity and whose exponent is scaled by Distance.

Paper: Schmaltz, "Similarity-Distance-Magnitude Universal Verification", 2025, arXiv:2502.20167
(the activation is also the subject of the author's "Similarity-Distance-Magnitude Activations",
arXiv:2509.12760). Conceptually ``SDM(z)_i = Similarity^(Distance · Magnitude_i) / Σ_c
Similarity^(Distance · Magnitude_c)``; concretely, for an output (logit) vector ``z`` over C classes::

    sdm(z)_i = (2 + q)^(d · z_i) / Σ_c (2 + q)^(d · z_c)

- Magnitude: the logits ``z`` (the softmax's decision-boundary awareness);
- Similarity ``q ∈ {0, 1, ..., k}``: how many of the input's nearest training exemplars (in the
  representation space, nearest first) in a row carry the predicted label *and* were correctly
  predicted (``similarity``); ``q = 0`` gives base 2;
- Distance ``d ∈ [0, 1]``: how close the input is to the training distribution, as
  ``1 - F(δ)`` where ``δ`` is its distance to the nearest training exemplar and ``F`` the empirical
  CDF of the same nearest distances on held-out calibration data (``distance_quantile``): far from
  the training data, ``d -> 0`` and the output flattens to uniform.

Equivalently ``sdm(z) = softmax(d · ln(2 + q) · z)``: a per-input inverse temperature. The paper's
class-conditional CDF partitioning for selective classification (the "SDM estimator") is not
implemented here. Deviations: Euclidean distance in the given representation; the precise
definition details of q and d (e.g. ties, which split supplies the exemplars) follow our reading
of the paper.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError


def sdm(z: Tensor, q: Tensor, d: Tensor) -> Tensor:
    """sdm(z)_i = (2 + q)^(d z_i) / Σ_c (2 + q)^(d z_c); ``z`` (N, C), ``q`` and ``d`` (N,)."""
    if z.dim() != 2 or q.shape != z.shape[:1] or d.shape != z.shape[:1]:
        raise ShapeError(f"sdm expects z (N, C), q (N,), d (N,); got {tuple(z.shape)}, {tuple(q.shape)}, {tuple(d.shape)}")
    if (q < 0).any() or (d < 0).any() or (d > 1).any():
        raise ConfigError("sdm: similarity q must be >= 0 and distance quantile d in [0, 1]")
    scale = d.to(z.dtype) * torch.log(2 + q.to(z.dtype))
    return torch.softmax(scale[:, None] * z, dim=-1)


def sdm_reference(z: Tensor, q: Tensor, d: Tensor) -> Tensor:
    """The formula as written, one input at a time (powers of the base, then normalised)."""
    rows = []
    for zi, qi, di in zip(z, q, d):
        base = 2.0 + float(qi)
        p = torch.tensor([base ** (float(di) * float(v)) for v in zi], dtype=z.dtype)
        rows.append(p / p.sum())
    return torch.stack(rows)


def similarity(h: Tensor, pred: Tensor, train_h: Tensor, train_y: Tensor, train_correct: Tensor, *,
               k: int = 100) -> Tensor:
    """q: over the ``k`` nearest training exemplars (nearest first), the length of the initial run
    with label equal to the input's prediction and a correct prediction of their own."""
    if k < 1:
        raise ConfigError(f"similarity: k must be >= 1, got {k}")
    k = min(k, len(train_h))
    idx = torch.cdist(h, train_h).topk(k, largest=False).indices  # (N, k), nearest first
    ok = (train_y[idx] == pred[:, None]) & train_correct[idx]
    return torch.cumprod(ok.to(torch.long), dim=1).sum(1)


def nearest_distance(h: Tensor, train_h: Tensor) -> Tensor:
    return torch.cdist(h, train_h).min(dim=1).values


def distance_quantile(delta: Tensor, calibration_delta: Tensor) -> Tensor:
    """d = 1 - F_cal(δ) with F_cal the empirical CDF (fraction of calibration distances <= δ)."""
    if calibration_delta.numel() == 0:
        raise ConfigError("distance_quantile needs at least one calibration distance")
    cal = calibration_delta.sort().values
    below = torch.searchsorted(cal, delta.contiguous(), right=True)
    return 1.0 - below.to(torch.float64) / len(cal)


def sdm_nll(z: Tensor, q: Tensor, d: Tensor, y: Tensor) -> Tensor:
    """Negative log-likelihood of the labels under sdm, in base 2 + q (the paper's change of base):
    ``-log_{2+q} sdm(z)_y``, mean over the batch."""
    p = sdm(z, q, d).gather(1, y[:, None])[:, 0]
    return (-torch.log(p) / torch.log(2 + q.to(z.dtype))).mean()


__all__ = ["sdm", "sdm_reference", "similarity", "nearest_distance", "distance_quantile", "sdm_nll"]
