r"""Kernel ridge regression on a task with a known power-law spectrum, measured against the
eigenframework's prediction.

Paper: Simon, Karkada, Ghosh & Belkin, "More is Better in Modern Machine Learning: when Infinite
Overparameterization is Optimal and Overfitting is Obligatory", 2023, arXiv:2311.14646. Sec. 3:
KRR with ``n`` samples and ridge ``δ`` has effective ridge ``κ`` solving
``Σ_i λ_i/(λ_i + κ) + δ/κ = n``, and test MSE ``E_te = E_0 (Σ_i (1 − L_i)² v_i² + σ²)`` with
``L_i = λ_i/(λ_i + κ)``, ``E_0 = n/(n − Σ_i L_i²)`` (``lens.theory.eigenlearning.krr_risk``).
Abstract / Sec. 5: for power-law tasks near-zero training error is obligatory; in the noiseless
case with a target that decays at least as fast as the spectrum the best ridge is zero.

The task (a linear kernel on Gaussian data, so the kernel's eigenfunctions are Gaussian):
``x ~ N(0, diag(λ))`` in ``d`` dimensions with ``λ_i = i^{−α}``; the eigenfunctions of
``K(x, x') = xᵀx'`` under this distribution are ``φ_i(x) = x_i/√λ_i`` with eigenvalues ``λ_i``;
the target is ``f*(x) = Σ_i v_i φ_i(x)`` with ``v_i² ∝ i^{−β}`` (``Σ v_i² = 1``) and labels
``y = f* + ε``, ``ε ~ N(0, σ²)``. KRR ``f̂(x) = K(x, X)(K + δI)^{-1} y = xᵀβ̂`` with
``β̂ = Xᵀ(XXᵀ + δI)^{-1} y``, so its test MSE against noisy labels is exact, without a test
sample: ``Σ_i λ_i (β̂_i − β*_i)² + σ²`` with ``β*_i = v_i/√λ_i``. Ridges are given in units of
``n κ_0`` (``κ_0``: the effective ridge at ``δ = 0``), the scale at which a ridge starts to matter.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory import eigenlearning
from ...registry import Paper
from . import register_measure

PAPER = Paper("More is Better in Modern Machine Learning: when Infinite Overparameterization is Optimal "
              "and Overfitting is Obligatory", 2023, "2311.14646")


def powerlaw_task(d: int, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``λ_i = i^{−α}`` and target coefficients ``v_i ∝ i^{−β/2}`` with ``Σ v_i² = 1``."""
    i = torch.arange(1, d + 1, dtype=torch.float64)
    v = i ** (-beta / 2)
    return i ** -alpha, v / v.norm()


def krr_test_mse(lam: torch.Tensor, v: torch.Tensor, n: int, ridges: list[float], noise: float,
                 generator: torch.Generator) -> tuple[list[float], list[float]]:
    """One draw of ``n`` training points; exact test MSE (noisy labels) and train MSE per ridge."""
    d = len(lam)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64) * lam.sqrt()
    beta_star = v / lam.sqrt()
    y = x @ beta_star + noise ** 0.5 * torch.randn(n, generator=generator, dtype=torch.float64)
    k = x @ x.T
    eye = torch.eye(n, dtype=torch.float64)
    tests, trains = [], []
    for r in ridges:
        coef = torch.linalg.solve(k + r * eye, y)  # (K + δI)^{-1} y; K is full rank as d > n
        beta_hat = x.T @ coef
        tests.append(float((lam * (beta_hat - beta_star).square()).sum()) + noise)
        trains.append(float((k @ coef - y).square().mean()))
    return tests, trains


def _check(n: int, d: int, draws: int, alpha: float, beta: float, noise: float) -> None:
    if n < 2 or d <= n or draws < 1:
        raise ConfigError(f"eigenlearning: need n >= 2, d > n (more modes than samples) and draws >= 1; "
                          f"got n={n}, d={d}, draws={draws}")
    if not (alpha > 1 and beta > 0 and noise >= 0):
        raise ConfigError(f"eigenlearning: need alpha > 1, beta > 0, noise >= 0; got {alpha}, {beta}, {noise}")


@register_measure("eigenlearning_krr_risk", metric="error", paper=PAPER)
def eigenlearning_krr_risk(seed: int, *, n: int = 256, d: int = 4000, alpha: float = 1.5,
                           beta: float = 1.5, noise: float = 0.1,
                           ridges: tuple[float, ...] | list[float] = (0.0, 0.3, 3.0),
                           draws: int = 20) -> dict[str, float]:
    """Relative error of the predicted test MSE against KRR's mean test MSE over ``draws`` datasets,
    the largest over the ridges (``ridges`` in units of ``n κ_0``)."""
    _check(n, d, draws, alpha, beta, noise)
    lam, v = powerlaw_task(d, alpha, beta)
    kappa0 = eigenlearning.effective_ridge(lam, n)
    abs_ridges = [float(r) * n * kappa0 for r in ridges]
    gen = torch.Generator().manual_seed(seed)
    mean_test = torch.zeros(len(ridges), dtype=torch.float64)
    mean_train = torch.zeros(len(ridges), dtype=torch.float64)
    for _ in range(draws):
        te, tr = krr_test_mse(lam, v, n, abs_ridges, noise, gen)
        mean_test += torch.tensor(te, dtype=torch.float64) / draws
        mean_train += torch.tensor(tr, dtype=torch.float64) / draws
    out: dict[str, float] = {"kappa0": kappa0}
    errors = []
    for r, r_abs, te, tr in zip(ridges, abs_ridges, mean_test.tolist(), mean_train.tolist()):
        pred = eigenlearning.krr_risk(lam, v, n, r_abs, noise)
        errors.append(abs(te - pred.test_mse) / pred.test_mse)
        out[f"test@{r:g}"], out[f"pred_test@{r:g}"] = te, pred.test_mse
        out[f"train@{r:g}"], out[f"pred_train@{r:g}"] = tr, pred.train_mse
    out["error"] = max(errors)
    return out


@register_measure("eigenlearning_optimal_ridge", metric="gain", paper=PAPER)
def eigenlearning_optimal_ridge(seed: int, *, n: int = 256, d: int = 4000, alpha: float = 1.5,
                                beta: float = 2.0, noise: float = 0.0,
                                ridges: tuple[float, ...] | list[float] = (0.1, 0.3, 1.0, 3.0),
                                draws: int = 20) -> dict[str, float]:
    """``gain``: how much the best positive ridge on the grid (units of ``n κ_0``) lowers KRR's mean
    test MSE relative to zero ridge, ``(E(0) − min_δ E(δ)) / E(0)``, on the same draws; ``<= 0``
    when interpolation is at least as good as every ridge on the grid."""
    _check(n, d, draws, alpha, beta, noise)
    if not ridges or min(ridges) <= 0:
        raise ConfigError(f"eigenlearning_optimal_ridge: ridges must be > 0 (zero is the baseline), got {ridges}")
    lam, v = powerlaw_task(d, alpha, beta)
    kappa0 = eigenlearning.effective_ridge(lam, n)
    abs_ridges = [0.0] + [float(r) * n * kappa0 for r in ridges]
    gen = torch.Generator().manual_seed(seed)
    mean = torch.zeros(len(abs_ridges), dtype=torch.float64)
    for _ in range(draws):
        mean += torch.tensor(krr_test_mse(lam, v, n, abs_ridges, noise, gen)[0], dtype=torch.float64) / draws
    e0 = float(mean[0])
    out = {"test@0": e0, "pred_test@0": eigenlearning.krr_risk(lam, v, n, 0.0, noise).test_mse}
    for r, r_abs, te in zip(ridges, abs_ridges[1:], mean[1:].tolist()):
        out[f"test@{r:g}"] = te
        out[f"pred_test@{r:g}"] = eigenlearning.krr_risk(lam, v, n, r_abs, noise).test_mse
    out["gain"] = (e0 - float(mean[1:].min())) / e0
    return out
