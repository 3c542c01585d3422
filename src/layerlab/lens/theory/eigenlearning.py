r"""Eigenlearning: the test risk of kernel ridge regression (KRR) from the kernel's eigenvalues.

Paper: Simon, Karkada, Ghosh & Belkin, "More is Better in Modern Machine Learning: when Infinite
Overparameterization is Optimal and Overfitting is Obligatory", 2023, arXiv:2311.14646
(Sec. 3, the KRR eigenframework; it collects the estimates of Simon, Dickens, Karkada & DeWeese,
"The Eigenlearning Framework", 2021, arXiv:2110.03922, and of Canatar, Bordelon & Pehlevan 2021,
Jacot et al. 2020).

Setting: a kernel ``K(x, x') = Σ_i λ_i φ_i(x) φ_i(x')`` with eigenfunctions orthonormal under the
data distribution (``E_x[φ_i φ_j] = δ_ij``), a target ``f*(x) = Σ_i v_i φ_i(x)``, ``n`` training
points with labels ``y = f*(x) + ε``, ``ε ~ N(0, σ²)`` (``noise = σ²``), and the KRR predictor
``f̂(x) = K(x, X) (K(X, X) + δ I)^{-1} y`` with ridge ``δ >= 0``. The eigenframework:

- the effective ridge ``κ > 0`` is the unique root of ``Σ_i λ_i/(λ_i + κ) + δ/κ = n``;
- the learnability of mode ``i`` is ``L_i = λ_i/(λ_i + κ)`` (so ``Σ_i L_i + δ/κ = n``, the
  conservation law);
- the overfitting coefficient is ``E_0 = n/(n − Σ_i L_i²)``;
- the test MSE (against noisy test labels) is ``E_te = E_0 (Σ_i (1 − L_i)² v_i² + σ²)``, and the
  train MSE ``E_tr = (δ/(nκ))² E_te``.

It is an estimate, exact as ``n`` and the number of modes grow together (and exact at any size
in expectation only asymptotically); for Gaussian features (a linear kernel on Gaussian data)
it holds best. The equations were checked against the authors' code
(``github.com/dkarkada/more-is-better``, ``theory.py``, ``krr_risk_theory``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError


def _spectrum(eigenvalues: Tensor | Sequence[float], who: str) -> Tensor:
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if lam.numel() == 0 or not torch.isfinite(lam).all() or (lam < 0).any():
        raise ConfigError(f"{who}: eigenvalues must be a non-empty list of finite numbers >= 0")
    return lam


def effective_ridge(eigenvalues: Tensor | Sequence[float], n: int, ridge: float = 0.0) -> float:
    r"""``κ``, the root of ``Σ_i λ_i/(λ_i + κ) + δ/κ = n`` (by bisection on ``log κ``).

    Args:
        eigenvalues: the kernel's eigenvalues ``λ_i >= 0`` (any order).
        n: the number of training points, ``>= 1``.
        ridge: ``δ >= 0``. With ``δ = 0`` there must be more than ``n`` positive eigenvalues
            (else KRR interpolates a finite-rank kernel exactly and ``κ = 0``).

    Returns:
        ``κ > 0`` to about machine precision.
    """
    lam = _spectrum(eigenvalues, "effective_ridge")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConfigError(f"effective_ridge: n must be an integer >= 1, got {n!r}")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ConfigError(f"effective_ridge: ridge must be finite and >= 0, got {ridge}")
    if ridge == 0 and int((lam > 0).sum()) <= n:
        raise ConfigError(f"effective_ridge: with ridge = 0 the kernel needs more than n = {n} positive "
                          f"eigenvalues, got {int((lam > 0).sum())}; add eigenvalues or use ridge > 0")

    def excess(kappa: float) -> float:
        return float((lam / (lam + kappa)).sum()) + ridge / kappa - n

    hi = (float(lam.sum()) + ridge) / n  # here the left side is <= n
    lo = hi
    while excess(lo) <= 0:
        lo /= 2.0
        if lo < 1e-300:
            raise ConfigError("effective_ridge: no root above 1e-300; the spectrum is too small to resolve")
    a, b = math.log(lo), math.log(hi)
    for _ in range(200):
        mid = 0.5 * (a + b)
        if excess(math.exp(mid)) > 0:
            a = mid
        else:
            b = mid
        if b - a < 1e-15:
            break
    return math.exp(0.5 * (a + b))


def learnabilities(eigenvalues: Tensor | Sequence[float], kappa: float) -> Tensor:
    """``L_i = λ_i/(λ_i + κ)``, float64."""
    lam = _spectrum(eigenvalues, "learnabilities")
    return lam / (lam + kappa)


@dataclass(frozen=True)
class KRRPrediction:
    """The eigenframework's estimates for one (spectrum, target, n, ridge, noise)."""

    kappa: float
    learnabilities: Tensor
    overfitting_coefficient: float
    test_mse: float
    train_mse: float


def krr_risk(eigenvalues: Tensor | Sequence[float], coefficients: Tensor | Sequence[float], n: int,
             ridge: float = 0.0, noise: float = 0.0) -> KRRPrediction:
    r"""Test and train MSE of KRR predicted from the eigenvalues (see the module docstring).

    Args:
        eigenvalues: ``λ_i``; coefficients: ``v_i``, the target's coefficients in the same
            eigenbasis (same length; modes not listed have ``v_i = 0``).
        n: training points; ridge: ``δ >= 0``; noise: ``σ² >= 0``, the label-noise variance.

    Returns:
        ``KRRPrediction`` with ``κ``, ``L_i``, ``E_0``, ``E_te`` (noisy test labels: subtract
        ``σ²`` for the error against ``f*``) and ``E_tr``.
    """
    lam = _spectrum(eigenvalues, "krr_risk")
    v = torch.as_tensor(coefficients, dtype=torch.float64).flatten()
    if v.shape != lam.shape:
        raise ShapeError(f"krr_risk: coefficients must match eigenvalues ({lam.numel()}), got {v.numel()}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"krr_risk: noise is a variance, finite and >= 0, got {noise}")
    kappa = effective_ridge(lam, n, ridge)
    big_l = lam / (lam + kappa)
    e0 = n / (n - float(big_l.square().sum()))
    test = e0 * (float(((1 - big_l).square() * v.square()).sum()) + noise)
    train = (ridge / (n * kappa)) ** 2 * test
    return KRRPrediction(kappa, big_l, e0, test, train)
