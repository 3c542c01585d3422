r"""The condition number bounds a linear unit's output entropy at a fixed weight norm.

Paper: O. Ludwig, "The Condition Number as a Scale-Invariant Proxy for Information Encoding in
Neural Units", 2025, arXiv:2506.16289 (abstract: "for a fixed weight norm, a concentrated
distribution of singular values (high condition number) corresponds to reduced overall
information transfer"; the linear unit ``y = W x`` with Gaussian input).

For ``x ~ N(0, I_n)`` and a square ``W`` with singular values ``σ_1 >= ... >= σ_n > 0`` the output
entropy is ``h(y) = ½ log det(2πe W Wᵀ) = (n/2) log(2πe) + Σ_i log σ_i``. At a fixed Frobenius
norm ``F = ‖W‖_F² = Σ σ_i²`` and condition number ``κ = σ_1/σ_n`` it is at most

    h_max(κ) = (n/2) log(2πe F/n) + log(2κ / (1 + κ²)),

which falls strictly as ``κ`` grows beyond 1 (``κ = 1``: the AM-GM maximum). Derivation: with
``σ_1 = κm`` and ``σ_n = m`` fixed, ``Σ log σ_i`` over the middle values at fixed ``Σ σ_i²`` is
largest when they are equal (``log`` is concave in ``σ²``), ``t² = (F − (1+κ²)m²)/(n−2)``; the
remaining function of ``m²`` is concave with its maximum at ``m² = 2F/(n(1+κ²))``, ``t² = F/n``,
which lies in ``[m, κm]`` for every ``κ >= 1``. The bound is attained by spectra
``(κm, t, ..., t, m)``.

The measurement draws ``n_matrices`` square ``n x n`` weights of three kinds — Gaussian matrices
with log-normally scaled columns, ``U diag(s) Vᵀ`` with log-normal ``s`` of random spread (both
with ``κ`` over several decades), and the extremal spectra above at random ``κ`` — scales each to
``F = n``, measures ``κ`` with the instrument ``layerlab.lens.spectra.condition_number`` and
``h`` from ``slogdet(W Wᵀ)`` (no SVD), and reports ``excess = max_W (h(W) − h_max(κ(W)))``
(at most 0 when the claim's bound holds; the extremal kind sits at 0 up to roundoff), the
Spearman correlation of ``log κ`` with ``h`` over the two random kinds (``rank_correlation``, the
claim's "corresponds to": negative), and ``extremal_gap``, the largest ``|h − h_max|`` of the
extremal kind (the bound is tight).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.spectra import condition_number
from ...registry import Paper
from . import register_measure


def entropy_bound(n: int, frobenius_sq: float, kappa: float) -> float:
    """``h_max(κ) = (n/2) log(2πe F/n) + log(2κ/(1+κ²))`` in nats (see the module docstring)."""
    return 0.5 * n * math.log(2 * math.pi * math.e * frobenius_sq / n) + math.log(2 * kappa / (1 + kappa * kappa))


def gaussian_output_entropy(w: torch.Tensor) -> float:
    """``h(W x) = ½ log det(2πe W Wᵀ)`` for ``x ~ N(0, I)``, by ``slogdet``."""
    sign, logdet = torch.linalg.slogdet(w @ w.T)
    if float(sign) <= 0:
        return -math.inf
    return 0.5 * (w.shape[0] * math.log(2 * math.pi * math.e) + float(logdet))


def _orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _spearman(a: list[float], b: list[float]) -> float:
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


@register_measure("condition_entropy_bound", metric="excess",
                  paper=Paper("The Condition Number as a Scale-Invariant Proxy for Information Encoding in "
                              "Neural Units", 2025, "2506.16289"))
def condition_entropy_bound(seed: int, *, n: int = 16, n_matrices: int = 300, max_spread: float = 2.0) -> dict[str, float]:
    if n < 3 or n_matrices < 3 or not max_spread > 0:
        raise ConfigError(f"condition_entropy_bound: need n >= 3, n_matrices >= 3, max_spread > 0; got {n}, "
                          f"{n_matrices}, {max_spread}")
    g = torch.Generator().manual_seed(seed)
    excess, extremal_gap = -math.inf, 0.0
    log_kappa, entropy, kappas = [], [], []
    for i in range(n_matrices):
        kind = i % 3
        tau = max_spread * float(torch.rand((), generator=g, dtype=torch.float64))
        if kind == 0:
            scale = torch.exp(tau * torch.randn(n, generator=g, dtype=torch.float64))
            w = torch.randn(n, n, generator=g, dtype=torch.float64) * scale
        elif kind == 1:
            s = torch.exp(tau * torch.randn(n, generator=g, dtype=torch.float64))
            w = _orthogonal(n, g) @ torch.diag(s) @ _orthogonal(n, g).T
        else:
            kappa = math.exp(3 * tau)
            m, t = math.sqrt(2 / (1 + kappa * kappa)), 1.0  # F = n: m² = 2F/(n(1+κ²)), t² = F/n
            s = torch.tensor([kappa * m] + [t] * (n - 2) + [m], dtype=torch.float64)
            w = _orthogonal(n, g) @ torch.diag(s) @ _orthogonal(n, g).T
        w = w * math.sqrt(n / float(w.square().sum()))  # fixed norm: F = n
        k = condition_number(w)
        h = gaussian_output_entropy(w)
        gap = h - entropy_bound(n, float(w.square().sum()), k)
        excess = max(excess, gap)
        kappas.append(k)
        if kind == 2:
            extremal_gap = max(extremal_gap, abs(gap))
        else:
            log_kappa.append(math.log(k))
            entropy.append(h)
    return {"excess": excess, "rank_correlation": _spearman(log_kappa, entropy), "extremal_gap": extremal_gap,
            "log10_kappa_max": math.log10(max(kappas)), "log10_kappa_min": math.log10(min(kappas))}
