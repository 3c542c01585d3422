r"""Inductive bias as the information needed to pick a well-generalizing hypothesis.

Paper: Boopathy, Yue, Hwang, Iyer & Fiete, "Towards Exact Computation of Inductive Bias", IJCAI
2024, arXiv:2406.15941. The inductive bias required by a task (with a fixed training set),
relative to a hypothesis space with sampling distribution ``p_h`` over the hypotheses that fit
the training data, is the information needed to specify a hypothesis whose test error is at most
a target ``ε``:

    I(ε) = -log2 P_{h ~ p_h}( e(h) <= ε ).

It is estimated by sampling hypotheses, computing their test errors ``e_1..e_K`` and modelling
their distribution; the paper (and the authors' released code, ``utils.compute_inductive_bias``)
fits a scaled noncentral chi-squared ``e ~ s χ'^2_k(λ)`` (location 0) by maximum likelihood and
reads the probability from its CDF, which extrapolates to targets far below the smallest sampled
error (where counting, ``-log2 #{e_i <= ε}/K``, is stuck at ``log2 K``). The kernel hypothesis
space of the paper is a Gaussian process conditioned on the training data (RBF kernel,
interpolating): the test predictions are ``f_* ~ N(K_{*X} K^{-1} Y, K_{**} - K_{*X} K^{-1} K_{X*})``
and ``e = mean (f_* - y_*)^2`` over test points and outputs, a quadratic form of a Gaussian
(a generalized chi-squared, which the scaled ``χ'^2`` approximates; it is exactly one when the
posterior covariance is isotropic — the closed form the tests use).

Implemented: ``fit_scaled_ncx2`` (MLE from a moment-matched start, in log-parameters),
``inductive_bias`` (bits, from the fitted law), ``counted_bias`` (the counting estimate),
``gp_hypothesis_errors`` (the kernel space; the paper solves for ``K^{-1}Y`` and ``K^{-1}K_{X*}``
by gradient descent on large data, here exact solves on small data). Verified against the
paper's abstract and the authors' code (the definition, the ``ncx2`` fit with ``floc=0``, the
GP posterior sampling); the code reports natural-log units, here bits (``/ ln 2``). The neural
network hypothesis space of the paper (test losses of independently trained nets) is the same
estimator applied to those losses; the paper's error bounds in the number of samples are not
implemented.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["fit_scaled_ncx2", "log2_probability", "inductive_bias", "counted_bias", "gp_hypothesis_errors",
           "rbf_kernel"]


def _errors(errors: Tensor | np.ndarray | list[float]) -> np.ndarray:
    e = np.asarray(errors.detach().cpu().numpy() if isinstance(errors, Tensor) else errors, dtype=np.float64).reshape(-1)
    if e.size < 10 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ConfigError(f"need at least 10 finite, positive test errors of sampled hypotheses; got {e.size} "
                          f"(min {e.min() if e.size else float('nan')})")
    return e


def fit_scaled_ncx2(errors: Tensor | np.ndarray | list[float]) -> tuple[float, float, float]:
    """``(k, λ, s)`` maximizing the likelihood of ``e_i = s X_i``, ``X_i ~ χ'^2_k(λ)`` (location 0,
    the paper's ``ncx2.fit(errors, floc=0)``)."""
    from scipy.optimize import minimize
    from scipy.stats import ncx2

    e = _errors(errors)
    # parameters (mean m = s(k+λ), variance v = 2s²(k+2λ), shape φ = λ/(k+λ)): m and v are pinned by
    # the data, φ alone is weakly identified (the raw (k, λ, s) lie on a flat ridge)
    def law(theta: np.ndarray) -> tuple[float, float, float]:
        m, v, phi = math.exp(theta[0]), math.exp(theta[1]), 1 / (1 + math.exp(-theta[2]))
        s = v / (2 * m * (1 + phi))
        a = m / s
        return (1 - phi) * a, phi * a, s

    def nll(theta: np.ndarray) -> float:
        k, lam, s = law(theta)
        out = -(ncx2.logpdf(e / s, k, lam) - math.log(s)).sum()
        return float(out) if np.isfinite(out) else 1e300

    m0, v0 = math.log(e.mean()), math.log(e.var())
    best = None
    for phi0 in (0.05, 0.5):
        res = minimize(nll, np.array([m0, v0, math.log(phi0 / (1 - phi0))]), method="Nelder-Mead",
                       options={"xatol": 1e-6, "fatol": 1e-8, "maxfev": 2000})
        if best is None or res.fun < best.fun:
            best = res
    k, lam, s = law(best.x)
    return float(k), float(lam), float(s)


def log2_probability(eps: float, k: float, lam: float, s: float) -> float:
    """``log2 P(s χ'^2_k(λ) <= eps)`` (Boost's noncentral chi-squared CDF via scipy, accurate far into
    the tail; where it underflows, Sankaran's normal approximation in log space, as the authors' code)."""
    from scipy.special import log_ndtr
    from scipy.stats import ncx2

    if not (eps > 0 and k > 0 and lam >= 0 and s > 0):
        raise ConfigError(f"need eps > 0 and a fitted law k > 0, lam >= 0, s > 0; got {eps}, {k}, {lam}, {s}")
    out = float(ncx2.logcdf(eps / s, k, lam))
    if not np.isfinite(out):
        x = eps / s
        h = 1 - 2 / 3 * (k + lam) * (k + 3 * lam) / (k + 2 * lam) ** 2
        p = (k + 2 * lam) / (k + lam) ** 2
        mm = (h - 1) * (1 - 3 * h)
        z = ((x / (k + lam)) ** h - (1 + h * p * (h - 1 - 0.5 * (2 - h) * mm * p))) / (h * math.sqrt(2 * p) * (1 + 0.5 * mm * p))
        out = float(log_ndtr(z))
    return out / math.log(2)


def inductive_bias(errors: Tensor | np.ndarray | list[float], eps: float) -> float:
    """``I(ε) = -log2 P(e <= ε)`` in bits, from the scaled noncentral chi-squared fitted to ``errors``."""
    return -log2_probability(eps, *fit_scaled_ncx2(errors))


def counted_bias(errors: Tensor | np.ndarray | list[float], eps: float) -> float:
    """``-log2 (#{e_i <= ε} / K)`` (``inf`` when no sampled error reaches ``ε``): the model-free
    estimate, usable only where ``P(e <= ε) >> 1/K``."""
    e = _errors(errors)
    hits = int((e <= eps).sum())
    return math.inf if hits == 0 else -math.log2(hits / e.size)


def rbf_kernel(a: Tensor, b: Tensor, lengthscale: float) -> Tensor:
    """``exp(-||a_i - b_j||^2 / (2 ℓ^2))``."""
    return torch.exp(-torch.cdist(a, b).square() / (2 * lengthscale**2))


def gp_hypothesis_errors(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, n_samples: int, *,
                         lengthscale: float, generator: torch.Generator | None = None, jitter: float = 1e-8) -> Tensor:
    """Test MSEs of ``n_samples`` hypotheses from the RBF Gaussian process conditioned on the training
    data (float64): ``f_* = μ + L z``, ``L L^T = K_{**} - K_{*X} K^{-1} K_{X*}``, ``z ~ N(0, I)`` per
    output; ``e = mean (f_* - y_*)^2``. ``y`` is ``(N,)`` or ``(N, outputs)``."""
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ShapeError(f"need x_train (N, d) and x_test (M, d) of one d; got {tuple(x_train.shape)}, {tuple(x_test.shape)}")
    ytr = y_train.double().reshape(len(y_train), -1)
    yte = y_test.double().reshape(len(y_test), -1)
    if len(ytr) != len(x_train) or len(yte) != len(x_test) or ytr.shape[1] != yte.shape[1]:
        raise ShapeError(f"targets do not match the inputs: y_train {tuple(y_train.shape)}, y_test {tuple(y_test.shape)}")
    if n_samples < 1 or not lengthscale > 0:
        raise ConfigError(f"need n_samples >= 1 and lengthscale > 0; got {n_samples}, {lengthscale}")
    xtr, xte = x_train.double(), x_test.double()
    K = rbf_kernel(xtr, xtr, lengthscale) + jitter * torch.eye(len(xtr), dtype=torch.float64)
    Ks, Kss = rbf_kernel(xte, xtr, lengthscale), rbf_kernel(xte, xte, lengthscale)
    Lk = torch.linalg.cholesky(K)
    A = torch.cholesky_solve(Ks.T, Lk)  # K^{-1} K_{X*}
    mean = A.T @ ytr
    cov = Kss - Ks @ A
    cov = (cov + cov.T) / 2 + jitter * torch.eye(len(xte), dtype=torch.float64)
    L = torch.linalg.cholesky(cov)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    z = torch.randn(n_samples, len(xte), ytr.shape[1], generator=g, dtype=torch.float64)
    f = mean + torch.einsum("ij,sjo->sio", L, z)
    return (f - yte).square().mean(dim=(1, 2))
