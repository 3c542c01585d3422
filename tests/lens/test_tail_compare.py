"""Tests of layerlab.lens.tail_compare: the truncated power law's normalizer against closed forms,
per-point log-likelihoods and the test statistic against a hand computation on a tiny sample,
the fits' optimality, and samples drawn from each distribution."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import special

from layerlab.errors import ConfigError, UnknownNameError
from layerlab.lens import spectra as S
from layerlab.lens import tail_compare as T


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _upper_gamma(s: float, c: float) -> float:
    """Γ(s, c) for s > 0 from scipy, Γ(0, c) = E1(c), for s < 0 by Γ(s, c) = (Γ(s+1, c) − c^s e^(−c)) / s."""
    if s == 0:
        return float(special.exp1(c))
    if s > 0:
        return float(special.gammaincc(s, c) * special.gamma(s))
    return (_upper_gamma(s + 1, c) - c**s * math.exp(-c)) / s


@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.5, 1.5, 2.5, 6.0])
@pytest.mark.parametrize("lam", [1e-6, 0.01, 1.0, 30.0])
def test_tpl_normalizer_against_the_incomplete_gamma_function(alpha, lam):
    xmin = 1.3
    ref = math.log(lam ** (alpha - 1) * _upper_gamma(1 - alpha, lam * xmin))
    assert float(T.tpl_log_normalizer(alpha, lam, xmin)) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_log_likelihoods_and_ratio_on_a_tiny_sample_by_hand():
    x = [1.2, 1.5, 2.0, 3.1, 7.0]
    xmin = 1.0
    t = torch.tensor(x, dtype=torch.float64)
    pl = [math.log(1.5 / xmin) - 2.5 * math.log(v / xmin) for v in x]  # α = 2.5
    assert T.log_likelihoods("power_law", t, xmin, {"alpha": 2.5}).tolist() == pytest.approx(pl, rel=1e-13)
    z = 0.3 ** 0.5 * 2 * ((0.3) ** -0.5 * math.exp(-0.3) - math.sqrt(math.pi) * math.erfc(math.sqrt(0.3)))
    tpl = [-1.5 * math.log(v) - 0.3 * v - math.log(z) for v in x]  # α = 1.5, λ = 0.3: Z = λ^½ Γ(−½, λ)
    got = T.log_likelihoods("truncated_power_law", t, xmin, {"alpha": 1.5, "lambda": 0.3})
    assert got.tolist() == pytest.approx(tpl, rel=1e-12)
    mu, sig = 0.4, 0.9
    tail = 0.5 * math.erfc((math.log(xmin) - mu) / (sig * math.sqrt(2)))
    ln = [-math.log(v * sig * math.sqrt(2 * math.pi)) - (math.log(v) - mu) ** 2 / (2 * sig**2) - math.log(tail)
          for v in x]
    assert T.log_likelihoods("lognormal", t, xmin, {"mu": mu, "sigma": sig}).tolist() == pytest.approx(ln, rel=1e-12)
    ex = [math.log(0.7) - 0.7 * (v - xmin) for v in x]
    assert T.log_likelihoods("exponential", t, xmin, {"lambda": 0.7}).tolist() == pytest.approx(ex, rel=1e-13)

    # the test statistic by hand, from the fitted parameters it reports
    fit = S.power_law(x, xmin=xmin)
    alpha = 1 + 5 / sum(math.log(v) for v in x)
    assert fit.alpha == pytest.approx(alpha, rel=1e-13)
    for alt in T.ALTERNATIVES:
        res = T.likelihood_ratio(x, alt, fit=fit, max_iter=30)
        l1 = [math.log(alpha - 1) - alpha * math.log(v) for v in x]
        l2 = T.log_likelihoods(alt, t, xmin, res.params).tolist() if res.params.get("lambda", 1) > 0 else l1
        d = [a - b for a, b in zip(l1, l2)]
        r = sum(d)
        sd = math.sqrt(sum((v - r / 5) ** 2 for v in d) / 5)
        assert res.ratio == pytest.approx(r, rel=1e-10, abs=1e-12) and res.n == 5
        if alt == "truncated_power_law":
            assert res.nested and res.ratio <= 0 and res.p_value == pytest.approx(math.erfc(math.sqrt(-r)), rel=1e-10)
        else:
            assert not res.nested
            assert res.normalized_ratio == pytest.approx(r / (sd * math.sqrt(5)), rel=1e-10)
            assert res.p_value == pytest.approx(math.erfc(abs(r) / (sd * math.sqrt(10))), rel=1e-10)


def _tpl_sample(alpha: float, lam: float, n: int, g: torch.Generator) -> torch.Tensor:
    """Exact draws of x^(-α) e^(-λx) on x >= 1 by rejection from the Pareto of exponent α."""
    out = []
    while sum(v.numel() for v in out) < n:
        p = (1 - torch.rand(4 * n, generator=g, dtype=torch.float64)) ** (-1 / (alpha - 1))
        out.append(p[torch.rand(4 * n, generator=g, dtype=torch.float64) < torch.exp(-lam * (p - 1))])
    return torch.cat(out)[:n]


def test_fits_are_maxima():
    x = _tpl_sample(1.5, 0.05, 800, _gen(1))
    for dist, keys in (("truncated_power_law", ("alpha", "lambda")), ("lognormal", ("mu", "sigma"))):
        p = T.fit_alternative(dist, x, 1.0)
        best = float(T.log_likelihoods(dist, x, 1.0, p).sum())
        for key in keys:
            for step in (-1e-3, 1e-3):
                q = dict(p, **{key: p[key] * (1 + step)})
                assert float(T.log_likelihoods(dist, x, 1.0, q).sum()) < best
    lam = T.fit_alternative("exponential", x, 1.0)["lambda"]
    assert lam == pytest.approx(1 / float((x - 1).mean()), rel=1e-12)


def test_the_generating_distribution_wins():
    g = _gen(2)
    n = 2000
    pareto = (1 - torch.rand(n, generator=g, dtype=torch.float64)) ** (-1 / 1.5)  # α = 2.5 on x >= 1
    lognormal = torch.exp(1.5 * torch.randn(n, generator=g, dtype=torch.float64))
    tpl = _tpl_sample(1.5, 0.05, n, g)
    fit = lambda x: S.power_law(x, xmin=1.0)  # noqa: E731  (the true xmin)

    r = T.likelihood_ratio(tpl, "truncated_power_law", fit=fit(tpl))
    assert r.favors == "truncated_power_law" and r.p_value < 1e-6
    assert r.params["alpha"] == pytest.approx(1.5, abs=0.1) and r.params["lambda"] == pytest.approx(0.05, rel=0.3)
    r = T.likelihood_ratio(lognormal, "lognormal", fit=fit(lognormal))
    assert r.favors == "lognormal" and r.p_value < 1e-3
    r = T.likelihood_ratio(pareto, "truncated_power_law", fit=fit(pareto))
    assert r.favors == "inconclusive" and r.ratio <= 0  # nested: never above 0, not significant here
    r = T.likelihood_ratio(pareto, "exponential", fit=fit(pareto))
    assert r.favors == "power_law"
    r = T.likelihood_ratio(pareto, "lognormal", fit=fit(pareto), max_iter=100)
    assert r.favors != "lognormal"
    with pytest.raises(UnknownNameError, match="alternative"):
        T.likelihood_ratio(pareto, "gamma")
    with pytest.raises(ConfigError, match="significance"):
        T.likelihood_ratio(pareto, significance=1.5)
