r"""Variability Collapse Index (VCI) of last-layer features.

Paper: Jing Xu & Haoxiong Liu, "Quantifying the Variability Collapse of Neural Networks", ICML 2023,
arXiv:2306.03440. With features ``h_i ∈ R^d``, labels ``y_i ∈ {1..K}``, class means ``μ_k``, the
global mean ``μ_G``, the total covariance ``Σ_T = (1/N) Σ_i (h_i - μ_G)(h_i - μ_G)^T`` and the
between-class covariance ``Σ_B = Σ_k p_k (μ_k - μ_G)(μ_k - μ_G)^T`` (``p_k = N_k / N``; the paper
states balanced classes, ``p_k = 1/K``),

    VCI = 1 - Tr(Σ_T^† Σ_B) / rank(Σ_B).

Properties this module's tests check exactly (float64):

- ``0 <= VCI <= 1``; ``VCI = 0`` when every feature equals its class mean (``Σ_T = Σ_B``).
- Invariance under any invertible affine map ``h -> A h + b`` (the pseudo-inverse included: the
  range of ``Σ_B`` lies in that of ``Σ_T``), where NC1 ``= Tr(Σ_W Σ_B^†)/K`` is not.
- The link to linear probing the abstract names: for balanced classes the least-squares probe onto
  one-hot targets, ``L* = min_{W,b} (1/N) Σ_i ||W h_i + b - e_{y_i}||²``, has
  ``L* = (K-1)/K - Tr(Σ_T^† Σ_B)/K``, so with ``rank Σ_B = K - 1``, ``VCI = L* / L_0`` where
  ``L_0 = (K-1)/K`` is the loss of the constant probe.

What was verified: the stored sources hold the abstract (invariance under invertible linear maps,
relation to the linear probing loss, numerical stability) and an independent implementation that
computes ``1 - Tr(pinv(Σ_B + Σ_W) Σ_B) / min(d, K - 1)`` (``min(d, K-1)`` is ``rank Σ_B`` for
generic means); the paper's full text was not available, so the definition above is the one
those agree on, and the linear-probe identity is derived here and tested, not quoted.

Forms: ``vci`` (whitens the centered features by their thin SVD: ``Tr(Σ_T^† Σ_B) =
Σ_k p_k ||S^{-1} V^T (μ_k - μ_G)||² N``, no d x d matrix inverted) and ``vci_reference`` (the
formula with ``torch.linalg.pinv``), tested equal to 1e-10. Ranks: singular values above
``max(N, d) eps s_max``. Cost O(N d min(N, d)).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .probes import ProbeContext, ProbeOutput, _features, _head_input, scored, register_probe

__all__ = ["class_statistics", "linear_probe_loss", "vci", "vci_reference"]


def class_statistics(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(h - μ_G, class means μ_k (K, d), weights p_k (K,), labels as 0..K-1)`` in float64; classes
    are the distinct labels present (at least two)."""
    if not (isinstance(features, Tensor) and features.dim() == 2):
        raise ShapeError(f"features must be (N, d), got {getattr(features, 'shape', None)}")
    if not (isinstance(labels, Tensor) and labels.shape == features.shape[:1]):
        raise ShapeError(f"labels must be (N,) = ({features.shape[0]},), got {getattr(labels, 'shape', None)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ShapeError(f"labels must be integer class indices, got {labels.dtype}")
    h = features.detach().double()
    if not bool(torch.isfinite(h).all()):
        raise ConfigError("features contain non-finite values (nan/inf)")
    classes, y = torch.unique(labels.detach(), return_inverse=True)
    if classes.numel() < 2:
        raise ConfigError(f"VCI needs at least two classes, got {classes.numel()}")
    counts = torch.bincount(y).double()
    means = torch.zeros(len(classes), h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, y, h) / counts[:, None]
    mu = h.mean(0)
    return h - mu, means - mu, counts / counts.sum(), y


def _rank(s: Tensor, shape: tuple[int, int]) -> Tensor:
    return s > s.max() * max(shape) * torch.finfo(s.dtype).eps if s.numel() else s.bool()


@torch.no_grad()
def vci(features: Tensor, labels: Tensor) -> float:
    """``1 - Tr(Σ_T^† Σ_B) / rank(Σ_B)`` of ``features`` (N, d) with integer ``labels`` (N,)."""
    x, m, p, _ = class_statistics(features, labels)
    n = x.shape[0]
    _, s, vh = torch.linalg.svd(x, full_matrices=False)  # Σ_T = V S² V^T / N
    keep = _rank(s, tuple(x.shape))
    if not bool(keep.any()):
        raise ConfigError("VCI is undefined: the features do not vary (Σ_T = 0)")
    whitened = (m @ vh[keep].T) / s[keep]  # rows S^{-1} V^T m_k
    explained = float(n * (p[:, None] * whitened.square()).sum())
    sb = torch.linalg.svdvals(p.sqrt()[:, None] * m)
    return 1.0 - explained / int(_rank(sb, tuple(m.shape)).sum())


@torch.no_grad()
def vci_reference(features: Tensor, labels: Tensor) -> float:
    """The same by the formula: ``Σ_T``, ``Σ_B`` as d x d matrices, ``pinv`` and ``matrix_rank``."""
    x, m, p, _ = class_statistics(features, labels)
    sigma_t = x.T @ x / x.shape[0]
    sigma_b = m.T @ (p[:, None] * m)
    return 1.0 - float(torch.trace(torch.linalg.pinv(sigma_t, hermitian=True) @ sigma_b)) / int(
        torch.linalg.matrix_rank(sigma_b, hermitian=True))


@torch.no_grad()
def linear_probe_loss(features: Tensor, labels: Tensor) -> float:
    """``min_{W,b} (1/N) Σ_i ||W h_i + b - e_{y_i}||²`` by least squares (minimum-norm solution), the
    probe the VCI is tied to."""
    x, _, _, y = class_statistics(features, labels)
    targets = torch.nn.functional.one_hot(y).double()
    targets = targets - targets.mean(0)  # the intercept b absorbs the means
    sol = torch.linalg.lstsq(x, targets, driver="gelsd").solution
    return float((x @ sol - targets).square().sum(1).mean())


@register_probe("variability", captures=_head_input)
def variability_probe(ctx: ProbeContext) -> ProbeOutput:
    """VCI of the features the head reads (the input of ``model.head``) at the scored positions of
    the probe batch, over the classes present (Xu & Liu 2023, arXiv:2306.03440)."""
    head = getattr(ctx.model, "head", None)
    if not isinstance(head, torch.nn.Linear):
        raise ConfigError("the variability probe needs a model with a linear `head` (layerlab's backbones have one)")
    _, targets, _ = scored(ctx)
    if targets.unique().numel() < 2:
        return ProbeOutput()
    features = _features(ctx, ["head"], "input")["head"]
    return ProbeOutput({"vci": vci(features, targets)})
