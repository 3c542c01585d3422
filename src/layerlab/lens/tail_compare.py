r"""Is a tail a power law, or something else? Likelihood-ratio tests against a truncated power law,
a lognormal and an exponential.

Papers
------
- A. Clauset, C. R. Shalizi, M. E. J. Newman, "Power-law distributions in empirical data", 2009
  (SIAM Review), arXiv:0706.1062, Sec. 5 and Appendix C.
- Q. H. Vuong, "Likelihood ratio tests for model selection and non-nested hypotheses", 1989
  (Econometrica 57).

The test (Clauset et al., Sec. 5.1)
-----------------------------------
On the tail ``x_1..x_n >= x_min`` of a power-law fit (``lens.spectra.power_law``), each candidate
is fitted by maximum likelihood on the same tail, and with per-point log-likelihoods ``ℓ⁽¹⁾_i``
(the power law) and ``ℓ⁽²⁾_i`` (the alternative)

    R = Σ_i (ℓ⁽¹⁾_i − ℓ⁽²⁾_i),   σ² = (1/n) Σ_i ((ℓ⁽¹⁾_i − ℓ⁽²⁾_i) − R/n)²,

``R > 0`` favours the power law. Its sign is significant when the p-value is small (Clauset et al.
use 0.1): for non-nested candidates (Vuong) ``R / (σ√n)`` is asymptotically standard normal and
``p = erfc(|R| / (σ √(2n)))``; the power law is nested in the truncated power law (``λ = 0``), so
``2|R|`` is asymptotically χ² with one degree of freedom: ``p = erfc(√|R|)`` (Appendix C; the
``powerlaw`` package and WeightWatcher compute the same). ``normalized_ratio = R / (σ√n)``.

The densities on ``x >= x_min`` (continuous)
--------------------------------------------
- power law: ``p(x) = (α − 1)/x_min · (x/x_min)^(−α)``;
- truncated power law: ``p(x) = x^(−α) e^(−λx) / Z``, ``Z = ∫_{x_min}^∞ t^(−α) e^(−λt) dt =
  λ^(α−1) Γ(1 − α, λ x_min)``, ``λ > 0``, any real ``α``; ``Z`` by Gauss–Legendre quadrature in
  ``u = ln(t/x_min)``, where the integrand ``exp((1−α)u − λ x_min e^u)`` is smooth (tested
  against the closed forms of ``Γ(s, c)`` at half-integer ``s``);
- lognormal: ``p(x) = φ((ln x − μ)/σ) / (x σ Φ((μ − ln x_min)/σ))``, a normal in ``ln x``
  truncated at ``ln x_min`` (``Φ`` by ``log_ndtr``, accurate far in the tail);
- exponential: ``p(x) = λ e^(−λ(x − x_min))``, MLE ``λ = 1 / mean(x − x_min)``.

The truncated power law and the lognormal are fitted by L-BFGS on ``(α, ln λ)`` and ``(μ, ln σ)``
in float64. Their log-likelihoods are concave in the natural parameters (exponential families),
so the maximum is unique when it exists; on pure power-law data it lies at the boundary
(``λ → 0``, or ``μ → −∞`` with ``σ² ∝ −μ``), where the fit stops after ``max_iter`` steps close
to the power law's likelihood. Since the truncated power law contains the power law, its fitted
log-likelihood is never taken below the power law's (the power law itself is the ``λ → 0`` end).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, unknown_name
from .spectra import PowerLawFit, _as_values, power_law

__all__ = ["ALTERNATIVES", "LikelihoodRatio", "fit_alternative", "likelihood_ratio", "log_likelihoods",
           "tpl_log_normalizer"]

ALTERNATIVES = ("truncated_power_law", "lognormal", "exponential")
_GL_NODES, _GL_WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(8))


def tpl_log_normalizer(alpha: Tensor | float, lam: Tensor | float, xmin: float) -> Tensor:
    """``ln Z`` with ``Z = ∫_{xmin}^∞ t^(−α) e^(−λt) dt`` (``λ > 0``), differentiable in ``α`` and
    ``λ``: ``Z = xmin^(1−α) ∫_0^∞ exp(g(u)) du``, ``g(u) = (1−α)u − c e^u``, ``c = λ xmin``, by
    8-point Gauss–Legendre on panels of ``[0, U]`` no wider than ``1/2``, ``U/64`` and the
    integrand's scale (``1/(|1−α| + c)`` for ``α >= 1``, ``1/√(1−α+c)`` for ``α < 1``), where ``U``
    is past the point where ``g`` has fallen below ``e^(−60)`` of its peak."""
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    a, c = float(alpha.detach()), float(lam.detach()) * xmin
    if not c > 0:
        raise ConfigError(f"the truncated power law needs lambda > 0, got {c / xmin}")
    s = 1.0 - a
    u_end = math.log1p(60.0 / c)
    for _ in range(8):  # U = ln(1 + (60 + max(0, s) U) / c): past the bump when alpha < 1
        u_end = math.log1p((60.0 + max(0.0, s) * u_end) / c)
    if s < 0:
        u_end = min(u_end, 60.0 / -s + 1.0)
    # the integrand's scale: 1/(|1-α| + c) where it falls from u = 0 (α >= 1), 1/√(1-α+c) at the
    # bump of an α < 1; panels capped for the far-off trial points of a line search
    width = min(0.5, u_end / 64, 1.0 / (abs(s) + c) if s <= 0 else 1.0 / math.sqrt(s + c))
    panels = min(20_000, max(1, math.ceil(u_end / width)))
    edges = torch.linspace(0.0, u_end, panels + 1, dtype=torch.float64)
    half = 0.5 * (edges[1:] - edges[:-1])
    u = ((edges[:-1] + half)[:, None] + half[:, None] * _GL_NODES[None, :]).reshape(-1)
    logw = (half[:, None] * _GL_WEIGHTS[None, :]).reshape(-1).log()
    g = (1.0 - alpha) * u - lam * xmin * u.exp()
    return (1.0 - alpha) * math.log(xmin) + torch.logsumexp(g + logw, 0)


def log_likelihoods(dist: str, x: Tensor, xmin: float, params: dict[str, float]) -> Tensor:
    """Per-point log-likelihoods of the tail ``x >= xmin`` under ``dist`` (``"power_law"`` with
    ``alpha``; ``"truncated_power_law"`` with ``alpha``, ``lambda``; ``"lognormal"`` with ``mu``,
    ``sigma``; ``"exponential"`` with ``lambda``); the densities in the module docstring."""
    x = x.to(torch.float64)
    if dist == "power_law":
        a = params["alpha"]
        return math.log(a - 1.0) - math.log(xmin) - a * (x / xmin).log()
    if dist == "truncated_power_law":
        a, lam = params["alpha"], params["lambda"]
        return -a * x.log() - lam * x - tpl_log_normalizer(a, lam, xmin)
    if dist == "lognormal":
        mu, sig = params["mu"], params["sigma"]
        y = x.log()
        tail = torch.special.log_ndtr(torch.tensor((mu - math.log(xmin)) / sig, dtype=torch.float64))
        return -y - math.log(sig) - 0.5 * math.log(2 * math.pi) - (y - mu) ** 2 / (2 * sig * sig) - tail
    if dist == "exponential":
        lam = params["lambda"]
        return math.log(lam) - lam * (x - xmin)
    raise unknown_name("distribution", dist, ("power_law",) + ALTERNATIVES)


def _maximize(neg_mean_ll, theta0: list[float], max_iter: int) -> list[float]:
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = neg_mean_ll(theta)
        value.backward()
        return value

    opt.step(closure)
    return theta.detach().tolist()


def fit_alternative(dist: str, x: Tensor, xmin: float, *, alpha0: float = 2.0, max_iter: int = 500) -> dict[str, float]:
    """Maximum-likelihood parameters of ``dist`` (one of ``ALTERNATIVES``) on the tail ``x >= xmin``
    (``alpha0``: the truncated power law's starting exponent, e.g. the power law's)."""
    x = x.to(torch.float64)
    if dist == "exponential":
        return {"lambda": 1.0 / float((x - xmin).mean())}
    if dist == "lognormal":
        y = x.log()
        ly = math.log(xmin)

        def nll(t: Tensor) -> Tensor:
            mu, sig = t[0], t[1].exp()
            return (y.mean() + t[1] + ((y - mu) ** 2).mean() / (2 * sig * sig)
                    + torch.special.log_ndtr((mu - ly) / sig))

        mu, log_sig = _maximize(nll, [float(y.mean()), math.log(float(y.std()) + 1e-12)], max_iter)
        return {"mu": mu, "sigma": math.exp(log_sig)}
    if dist == "truncated_power_law":
        mean_log, mean_x = float(x.log().mean()), float(x.mean())

        def nll(t: Tensor) -> Tensor:
            return t[0] * mean_log + t[1].exp() * mean_x + tpl_log_normalizer(t[0], t[1].exp(), xmin)

        a, log_lam = _maximize(nll, [alpha0, math.log(0.1 / mean_x)], max_iter)
        return {"alpha": a, "lambda": math.exp(log_lam)}
    raise unknown_name("alternative distribution", dist, ALTERNATIVES)


@dataclass(frozen=True)
class LikelihoodRatio:
    """``R = Σ (ℓ_power_law − ℓ_alternative)`` over the tail's ``n`` points, ``normalized_ratio =
    R / (σ√n)``, its ``p_value``, whether the power law is ``nested`` in the alternative, the
    alternative's fitted ``params``, the power law's ``alpha`` and ``xmin``, and ``favors``: the
    power law (``R > 0``) or the alternative (``R < 0``) when ``p_value < significance``, else
    ``"inconclusive"``."""

    alternative: str
    ratio: float
    normalized_ratio: float
    p_value: float
    nested: bool
    n: int
    alpha: float
    xmin: float
    params: dict[str, float] = field(default_factory=dict)
    favors: str = "inconclusive"


def likelihood_ratio(
    values: Tensor | Sequence[float] | np.ndarray,
    alternative: str = "lognormal",
    *,
    fit: PowerLawFit | None = None,
    method: str = "csn",
    significance: float = 0.1,
    max_iter: int = 500,
) -> LikelihoodRatio:
    """Clauset et al.'s likelihood-ratio test of the power-law tail of ``values`` against
    ``alternative`` (``"truncated_power_law"``, ``"lognormal"`` or ``"exponential"``).

    Args:
        values: 1-D sample (an ESD).
        alternative: the competing distribution, fitted on the same tail.
        fit: the power-law fit whose tail (``x >= fit.xmin``) and ``α`` are tested; default
            ``power_law(values, method=method)``.
        method: the power-law fit's method when ``fit`` is not given.
        significance: the p-value below which ``favors`` names a winner (Clauset et al.: 0.1).
        max_iter: L-BFGS iterations for the alternative's fit.

    Raises:
        ConfigError / UnknownNameError: unknown alternative, significance outside (0, 1);
        ShapeError: fewer than 2 tail points, or a tail of one value.
    """
    if alternative not in ALTERNATIVES:
        raise unknown_name("alternative distribution", alternative, ALTERNATIVES)
    if not 0 < significance < 1:
        raise ConfigError(f"significance must be in (0, 1), got {significance}")
    x = _as_values(values, "values")
    if fit is None:
        fit = power_law(x, method=method)
    tail = torch.sort(x[x >= fit.xmin]).values
    n = tail.numel()
    if n < 2 or float(tail[-1]) == float(tail[0]):
        raise ShapeError(f"the tail x >= {fit.xmin:g} has {n} point(s), not all equal needed; pass the fit of this sample")
    ll_pl = log_likelihoods("power_law", tail, fit.xmin, {"alpha": fit.alpha})
    params = fit_alternative(alternative, tail, fit.xmin, alpha0=fit.alpha, max_iter=max_iter)
    ll_alt = log_likelihoods(alternative, tail, fit.xmin, params)
    nested = alternative == "truncated_power_law"
    if nested and float(ll_alt.sum()) < float(ll_pl.sum()):
        ll_alt = ll_pl  # the power law is the lambda -> 0 end of the truncated power law
        params = {"alpha": fit.alpha, "lambda": 0.0}
    d = ll_pl - ll_alt
    r = float(d.sum())
    sd = float(d.std(unbiased=False))
    normalized = r / (sd * math.sqrt(n)) if sd > 0 else 0.0
    if nested:
        p = math.erfc(math.sqrt(abs(r)))
    else:
        p = math.erfc(abs(r) / (sd * math.sqrt(2 * n))) if sd > 0 else 1.0
    favors = "inconclusive" if p >= significance or r == 0 else "power_law" if r > 0 else alternative
    return LikelihoodRatio(alternative, r, normalized, p, nested, n, fit.alpha, fit.xmin, params, favors)
