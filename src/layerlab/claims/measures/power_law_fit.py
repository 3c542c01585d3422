r"""The power-law exponent's standard error and the likelihood-ratio test of Clauset, Shalizi & Newman.

Paper: A. Clauset, C. R. Shalizi, M. E. J. Newman, "Power-Law Distributions in Empirical Data",
SIAM Review 51(4), 2009, arXiv:0706.1062. Verified against the paper (abstract; Sec. 3.1, eqs.
(3.1)-(3.2); Sec. 5.1; Appendix C) and against the ``powerlaw`` package's documentation of the
same test:

* Sec. 3.1: on a tail of ``n`` points ``x_i >= x_min`` of the continuous power law
  ``p(x) = (α - 1)/x_min (x/x_min)^(-α)`` the maximum-likelihood exponent is
  ``α̂ = 1 + n [Σ_i ln(x_i/x_min)]^(-1)`` (3.1), with standard error
  ``σ = (α̂ - 1)/√n + O(1/n)`` (3.2), "derived from the width of the likelihood maximum": so
  ``α̂ ± 1.96 σ`` covers the true α in about 95% of samples. (For a given ``x_min``; the paper
  notes that σ leaves out the uncertainty of an estimated ``x_min``, for which it bootstraps.)
  Exactly, ``(α̂ - 1) = n(α - 1)/Γ`` with ``Γ ~ Gamma(n, 1)``, so the interval covers α iff
  ``n(1 - c) <= Γ <= n(1 + c)``, ``c = 1.96/√n``: the finite-``n`` coverage
  ``P(n, n(1 + c)) - P(n, n(1 - c))`` (``P`` the regularized lower incomplete gamma function),
  independent of α (``exact_coverage``).
* Sec. 5.1: with per-point log-likelihoods of two fitted candidates on the same tail,
  ``R = Σ_i (ℓ⁽¹⁾_i - ℓ⁽²⁾_i)`` is positive when the first (the power law) is the better fit and
  negative when the second is; its sign is trusted when the p-value (Vuong's normal
  approximation, or χ²₁ for the nested truncated power law, Appendix C) is below 0.1.

The measurement (one seed; ``lens.spectra.power_law`` and ``lens.tail_compare.likelihood_ratio``):

1. ``replicates`` samples of ``n`` points from the power law (``α``, ``x_min = 1``) by inversion
   ``x = (1 - u)^(-1/(α - 1))``, fitted with ``x_min = 1`` given: ``coverage`` = fraction with
   ``|α̂ - α| <= 1.96 σ``. Not ruled, recorded: ``ks_coverage``, the same with ``x_min`` chosen by
   the KS scan (``ks_replicates`` samples).
2. ``lr_replicates`` power-law samples (``n`` points, ``x_min = 1`` given) tested against an
   exponential (the test should favour the power law) and a truncated power law (nested: it should
   favour the truncation in at most a fraction ``significance`` of samples, the test's size), and
   ``lr_replicates`` lognormal samples (``lognormal_n`` points of ``exp(N(0, lognormal_sigma²))``,
   tail above the median ``x_min = 1``) tested against a lognormal (it should favour the
   lognormal). ``miss_rate``: the larger of the two fractions of samples whose test does not
   favour the family that generated them; ``false_positive_rate``: the nested test's rejections.
   Recorded, not ruled: ``pl_vs_lognormal_wrong_rate`` over ``pl_vs_lognormal_replicates``
   power-law samples tested against a lognormal (a family that contains the power law as a limit,
   where Vuong's test is degenerate; slow, hence few samples).

``violation = max(|coverage - 0.95| - coverage_tol, miss_rate - max_miss, false_positive_rate -
significance)``: at most 0 when the standard error covers at its stated rate and the test names
the generating family.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import spectra, tail_compare
from ...registry import Paper
from . import register_measure

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def exact_coverage(n: int, z: float = Z95) -> float:
    """``P(|α̂ - α| <= z (α̂ - 1)/√n)`` for the MLE on ``n`` exact power-law points with ``x_min`` known
    (see the module docstring): ``P(n, n(1 + c)) - P(n, n(1 - c))``, ``c = z/√n``."""
    c = z / math.sqrt(n)
    a = torch.tensor(float(n), dtype=torch.float64)
    hi = torch.special.gammainc(a, torch.tensor(n * (1 + c), dtype=torch.float64))
    lo = torch.special.gammainc(a, torch.tensor(max(n * (1 - c), 0.0), dtype=torch.float64))
    return float(hi - lo)


def power_law_sample(n: int, alpha: float, generator: torch.Generator, xmin: float = 1.0) -> torch.Tensor:
    """``n`` draws of the continuous power law ``p(x) ∝ x^(-alpha)`` on ``x >= xmin`` (float64)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return xmin * (1.0 - u).pow(-1.0 / (alpha - 1.0))


@register_measure("clauset_power_law", metric="violation",
                  paper=Paper("Power-Law Distributions in Empirical Data", 2009, "0706.1062"))
def clauset_power_law(seed: int, *, alpha: float = 2.5, n: int = 500, replicates: int = 2000,
                      ks_replicates: int = 50, lr_replicates: int = 100, lognormal_n: int = 1000,
                      lognormal_sigma: float = 1.0, pl_vs_lognormal_replicates: int = 10,
                      significance: float = 0.1, coverage_tol: float = 0.02,
                      max_miss: float = 0.1) -> dict[str, float]:
    if (not alpha > 1 or n < 20 or replicates < 1 or ks_replicates < 0 or lr_replicates < 1 or lognormal_n < 20
            or not lognormal_sigma > 0 or pl_vs_lognormal_replicates < 0 or not 0 < significance < 1
            or not coverage_tol >= 0 or not 0 <= max_miss <= 1):
        raise ConfigError(f"clauset_power_law: need alpha > 1, n >= 20, replicates, lr_replicates >= 1, "
                          f"lognormal_n >= 20, lognormal_sigma > 0, 0 < significance < 1; got alpha={alpha}, "
                          f"n={n}, replicates={replicates}, lr_replicates={lr_replicates}, lognormal_n={lognormal_n}, "
                          f"lognormal_sigma={lognormal_sigma}, significance={significance}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of fits of 500 points: one thread is faster (and kind to a shared machine)
    try:
        return _measure(seed, alpha, n, replicates, ks_replicates, lr_replicates, lognormal_n, lognormal_sigma,
                        pl_vs_lognormal_replicates, significance, coverage_tol, max_miss)
    finally:
        torch.set_num_threads(threads)


def _measure(seed: int, alpha: float, n: int, replicates: int, ks_replicates: int, lr_replicates: int,
             lognormal_n: int, lognormal_sigma: float, pl_vs_lognormal_replicates: int, significance: float,
             coverage_tol: float, max_miss: float) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    covered, z = 0, []
    for _ in range(replicates):
        fit = spectra.power_law(power_law_sample(n, alpha, g), xmin=1.0)
        covered += abs(fit.alpha - alpha) <= Z95 * fit.sigma
        z.append((fit.alpha - alpha) / fit.sigma)
    coverage = covered / replicates
    zt = torch.tensor(z, dtype=torch.float64)
    ks_cov = math.nan
    if ks_replicates:
        fits = [spectra.power_law(power_law_sample(n, alpha, g)) for _ in range(ks_replicates)]
        ks_cov = sum(abs(f.alpha - alpha) <= Z95 * f.sigma for f in fits) / ks_replicates

    miss_exp = false_pos = miss_ln = 0
    for _ in range(lr_replicates):
        x = power_law_sample(n, alpha, g)
        fit = spectra.power_law(x, xmin=1.0)
        miss_exp += tail_compare.likelihood_ratio(x, "exponential", fit=fit, significance=significance).favors != "power_law"
        false_pos += tail_compare.likelihood_ratio(
            x, "truncated_power_law", fit=fit, significance=significance).favors == "truncated_power_law"
        y = torch.exp(lognormal_sigma * torch.randn(lognormal_n, generator=g, dtype=torch.float64))
        r = tail_compare.likelihood_ratio(y, "lognormal", fit=spectra.power_law(y, xmin=1.0), significance=significance)
        miss_ln += r.favors != "lognormal"
    pl_ln_wrong = math.nan
    if pl_vs_lognormal_replicates:
        wrong = 0
        for _ in range(pl_vs_lognormal_replicates):
            x = power_law_sample(n, alpha, g)
            wrong += tail_compare.likelihood_ratio(x, "lognormal", fit=spectra.power_law(x, xmin=1.0),
                                                   significance=significance).favors == "lognormal"
        pl_ln_wrong = wrong / pl_vs_lognormal_replicates
    miss_rate = max(miss_exp, miss_ln) / lr_replicates
    fp_rate = false_pos / lr_replicates
    violation = max(abs(coverage - 0.95) - coverage_tol, miss_rate - max_miss, fp_rate - significance)
    return {"violation": violation, "coverage": coverage, "exact_coverage": exact_coverage(n),
            "z_mean": float(zt.mean()), "z_std": float(zt.std()) if len(z) > 1 else math.nan, "ks_coverage": ks_cov,
            "miss_rate_exponential": miss_exp / lr_replicates, "miss_rate_lognormal": miss_ln / lr_replicates,
            "false_positive_rate_truncated": fp_rate, "pl_vs_lognormal_wrong_rate": pl_ln_wrong}
