"""MP-GELU's closed-form moments against Monte Carlo.

Paper: Hirayama & Takamaeda-Yamazaki, "MP-GELU Bayesian Neural Networks: Moment Propagation by
GELU Nonlinearity", 2022, arXiv:2211.13402: for a Gaussian pre-activation ``X ~ N(mu, sigma^2)``
the first and second moments of ``GELU(X) = X Phi(X)`` are computed analytically, without Taylor
expansion or sampling (``layerlab.blocks.activations_mpgelu.gelu_moments``)::

    E[GELU(X)] = mu Phi(mu / s) + sigma^2 phi(mu / s) / s,   s = sqrt(1 + sigma^2),

and ``E[GELU(X)^2]`` through Stein's lemma and one bivariate orthant probability (Owen's T).

The measurement draws ``points`` pairs ``(mu, sigma)`` per seed (``mu ~ U(-mu_max, mu_max)``,
``sigma ~ U(sigma_min, sigma_max)``) from a ``torch.Generator``, samples ``samples`` draws of
``GELU(X)`` at each, and returns the worst disagreement in the natural units of each moment::

    error = max over points of max(|m_cf - m_mc| / sd_mc, |v_cf - v_mc| / v_mc)

(the mean's error in output standard deviations, the variance's relative error). Monte Carlo
noise alone gives about ``1 / sqrt(samples)`` and ``sqrt((kurtosis - 1) / samples)``.
``variance = "gate"`` measures the variance of GELU's stochastic gate form instead (larger than
GELU's own variance), for contrast.
"""
from __future__ import annotations

import math

import torch

from ...blocks.activations_mpgelu import MP_GELU_PAPER, VARIANCES, gelu_moments
from ...errors import ConfigError
from . import register_measure


@register_measure("mp_gelu_moments", metric="error", paper=MP_GELU_PAPER)
def mp_gelu_moments(seed: int, *, points: int = 16, samples: int = 1_000_000, mu_max: float = 3.0,
                    sigma_min: float = 0.1, sigma_max: float = 2.0, variance: str = "exact") -> dict[str, float]:
    if points < 1 or samples < 1000:
        raise ConfigError(f"mp_gelu_moments: need points >= 1 and samples >= 1000; got points={points}, "
                          f"samples={samples}")
    if not 0 < sigma_min <= sigma_max or mu_max < 0:
        raise ConfigError(f"mp_gelu_moments: need 0 < sigma_min <= sigma_max and mu_max >= 0; got "
                          f"sigma_min={sigma_min}, sigma_max={sigma_max}, mu_max={mu_max}")
    if variance not in VARIANCES:
        raise ConfigError(f"mp_gelu_moments: variance must be one of {VARIANCES}, got {variance!r}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    mu = mu_max * (2 * torch.rand(points, generator=g, dtype=f64) - 1)
    sigma = sigma_min + (sigma_max - sigma_min) * torch.rand(points, generator=g, dtype=f64)
    m_cf, v_cf = gelu_moments(mu, sigma**2, variance)
    mean_err = var_err = 0.0
    for i in range(points):
        y = torch.nn.functional.gelu(mu[i] + sigma[i] * torch.randn(samples, generator=g, dtype=f64))
        m_mc, v_mc = y.mean().item(), y.var().item()
        mean_err = max(mean_err, abs(m_cf[i].item() - m_mc) / math.sqrt(v_mc))
        var_err = max(var_err, abs(v_cf[i].item() - v_mc) / v_mc)
    return {"error": max(mean_err, var_err), "mean_error": mean_err, "var_error": var_err,
            "mc_noise": 1.0 / math.sqrt(samples)}
