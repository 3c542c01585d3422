r"""Diffusion spectral entropy (DSE) and diffusion spectral mutual information (DSMI).

Paper: Liao, Liu, Christensen, Tong, Huguet, Wolf, Nickel, Adelstein & Krishnaswamy, "Assessing
Neural Network Representations During Training Using Noise-Resilient Diffusion Spectral Entropy",
2023, arXiv:2312.04823 (Sec. 3). For representations ``z_1 .. z_N``:

    G_ij = exp(-||z_i - z_j||² / (2 σ²)),   P = D^{-1} G   (D_ii = Σ_j G_ij, a diffusion operator),
    λ̃_i = |λ_i|^t / Σ_j |λ_j|^t              (λ_i the eigenvalues of P, diffused t steps),
    DSE(Z) = -Σ_i λ̃_i log2 λ̃_i,
    DSMI(Z; Y) = DSE(Z) - Σ_y p(y) DSE(Z | Y = y)   (DSE of the points of each class).

``P`` is similar to the symmetric ``D^{-1/2} G D^{-1/2}`` (same eigenvalues, real), whose
spectrum is taken here (``eigvalsh``, float64). Closed forms (tested): ``N`` identical points have
``P = 11ᵀ/N``, eigenvalues ``(1, 0, ..., 0)``: DSE = 0; ``k`` groups of identical points, groups
far apart against ``σ``: ``P`` is block diagonal with ``k`` such blocks, eigenvalues ``1`` (k times)
and 0: DSE = log2 k for every ``t``, and DSMI with the group label = log2 k; noisy groups approach
it as ``t`` grows (the other eigenvalues are below 1 and vanish under the power).

Deviation: the paper uses a fixed ``σ`` (10 in its code) and, for DSMI, a class-size-matched
random subset in place of ``Z`` in the first term; here ``sigma=None`` takes the median pairwise
distance (scale-free, so a probe can compare steps), and DSMI is the plain definition above.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .probes import ProbeContext, ProbeOutput, _is_int, _require, register_probe, scored


def _points(z: Tensor) -> Tensor:
    if z.dim() < 2 or z.shape[0] < 1:
        raise ShapeError(f"representations must be (N, ...) with N >= 1, got {tuple(z.shape)}")
    return z.detach().double().reshape(z.shape[0], -1)


def bandwidth(z: Tensor) -> float:
    """The median of the pairwise distances ``||z_i - z_j||``, ``i < j`` (1 when all are 0)."""
    z = _points(z)
    d = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], 1)
    off = d[iu[0], iu[1]]
    med = float(off.median()) if off.numel() else 0.0
    return med if med > 0 else 1.0


def diffusion_eigenvalues(z: Tensor, sigma: float | None = None) -> Tensor:
    """Eigenvalues (descending) of ``P = D^{-1} G`` for the Gaussian kernel of bandwidth ``σ``."""
    z = _points(z)
    s = bandwidth(z) if sigma is None else float(sigma)
    if not s > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma}")
    g = torch.exp(-torch.cdist(z, z).square() / (2 * s * s))
    r = g.sum(1).rsqrt()
    return torch.linalg.eigvalsh(r[:, None] * g * r[None, :]).flip(0)


def dse(z: Tensor, t: int = 1, sigma: float | None = None) -> float:
    """``DSE(Z) = -Σ λ̃ log2 λ̃`` with ``λ̃ = |λ|^t / Σ |λ|^t`` (bits)."""
    if not _is_int(t, 1):
        raise ConfigError(f"t must be an integer >= 1, got {t!r}")
    lam = diffusion_eigenvalues(z, sigma).abs() ** t
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def dsmi(z: Tensor, y: Tensor, t: int = 1, sigma: float | None = None) -> float:
    """``DSE(Z) - Σ_y p(y) DSE(Z | Y = y)`` (bits); ``σ`` is shared by all terms (default: the
    median distance of all of ``Z``)."""
    z = _points(z)
    y = y.reshape(-1)
    if y.shape[0] != z.shape[0]:
        raise ShapeError(f"y must have one label per point ({z.shape[0]}), got {y.shape[0]}")
    s = bandwidth(z) if sigma is None else sigma
    cond = sum((y == c).double().mean() * dse(z[y == c], t, s) for c in y.unique())
    return dse(z, t, s) - float(cond)


def _check_dse(options: dict) -> None:
    _require("diffusion_entropy", options, "t", lambda v: _is_int(v, 1), "an integer >= 1")


def _head_input(model) -> dict[str, str]:
    from torch import nn

    return {"head": "input"} if isinstance(getattr(model, "head", None), nn.Linear) else {}


@register_probe("diffusion_entropy", check=_check_dse, captures=_head_input)
def diffusion_entropy_probe(ctx: ProbeContext, *, t: int = 1) -> ProbeOutput:
    """DSE of the representation the head reads (its input; the scored position for sequences) on
    the probe batch, and DSMI with the targets (``dse``, ``dsmi``; median-distance bandwidth)."""
    from torch import nn

    from .dynamics import capture

    inputs, targets, position = scored(ctx)
    if not isinstance(getattr(ctx.model, "head", None), nn.Linear):
        raise ConfigError("the diffusion_entropy probe reads the input of the model's linear `head`; "
                          "this model has none")
    rep = ctx.activations.get("head")
    if rep is None:
        rep = capture(ctx.model, ctx.batch.inputs, ["head"], kind="input")["head"]
    n = len(inputs)
    rep = rep[:n]
    if position is not None and rep.dim() >= 3:
        rep = rep[torch.arange(n, device=rep.device), position]
    rep = rep.reshape(n, -1).cpu()
    return ProbeOutput({"dse": dse(rep, t), "dsmi": dsmi(rep, targets.cpu(), t)})
