"""The Clauset-Shalizi-Newman measurement (arXiv:0706.1062): the MLE's standard error covers at its
exact finite-n rate, and the likelihood-ratio tests name the generating family."""
from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.power_law_fit import Z95, exact_coverage, power_law_sample
from layerlab.errors import ConfigError


@pytest.mark.parametrize("n", [20, 50, 500, 5000])
def test_exact_coverage_is_the_gamma_probability_of_the_interval(n):
    # alpha_hat - 1 = n (alpha - 1) / Gamma(n, 1): the interval covers iff n(1 - c) <= Gamma <= n(1 + c)
    c = Z95 / math.sqrt(n)
    expected = scipy.stats.gamma.cdf(n * (1 + c), n) - scipy.stats.gamma.cdf(n * (1 - c), n)
    assert exact_coverage(n) == pytest.approx(expected, abs=1e-10)


def test_exact_coverage_tends_to_the_nominal_rate():
    assert abs(exact_coverage(100_000) - 0.95) < 1e-3
    assert abs(exact_coverage(20) - 0.95) > 2e-3  # at small n it is not the nominal rate


def test_power_law_sample_has_the_pareto_survival_function():
    x = power_law_sample(200_000, 2.5, torch.Generator().manual_seed(0), xmin=2.0)
    assert float(x.min()) >= 2.0
    for q in (3.0, 10.0):  # P(X > q) = (q / xmin)^(1 - alpha)
        assert float((x > q).double().mean()) == pytest.approx((q / 2.0) ** -1.5, rel=0.02)


def test_measurement_covers_at_the_exact_rate_and_combines_its_terms():
    m = get_measure("clauset_power_law")
    out = m(0, n=200, replicates=400, ks_replicates=0, lr_replicates=3, lognormal_n=400,
            pl_vs_lognormal_replicates=0)
    se = math.sqrt(0.05 * 0.95 / 400)
    assert abs(out["coverage"] - exact_coverage(200)) < 4 * se
    assert abs(out["z_std"] - 1) < 0.15
    miss = max(out["miss_rate_exponential"], out["miss_rate_lognormal"])
    assert out["violation"] == pytest.approx(max(abs(out["coverage"] - 0.95) - 0.02, miss - 0.1,
                                                 out["false_positive_rate_truncated"] - 0.1))
    assert out["miss_rate_lognormal"] == 0.0  # 200-point lognormal tails: the test names the lognormal
    assert math.isnan(out["ks_coverage"]) and math.isnan(out["pl_vs_lognormal_wrong_rate"])


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="alpha > 1"):
        get_measure("clauset_power_law")(0, alpha=1.0)
