"""Inductive bias from sampled hypotheses (lens.inductive_bias, arXiv:2406.15941) against the closed
form of an isotropic Gaussian hypothesis space, where the test MSE is exactly a scaled noncentral
chi-squared, and the GP posterior sampler against its exact mean error."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ncx2

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import inductive_bias as ib


def isotropic(seed: int, K: int, n: int = 40, sigma: float = 0.5) -> tuple[torch.Tensor, float, float]:
    """K test MSEs of hypotheses f = mu + sigma z on n test points (y = 0): e ~ (sigma^2/n) chi'^2_n(lam)."""
    mu = torch.randn(n, generator=torch.Generator().manual_seed(123), dtype=torch.float64) * 0.3
    z = torch.randn(K, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (mu + sigma * z).square().mean(1), float(mu.square().sum()) / sigma**2, sigma**2 / n


@pytest.mark.parametrize("seed", [1])
def test_extrapolated_bits_match_the_closed_form_far_beyond_counting(seed):
    e, lam, scale = isotropic(seed, K=2000)
    eps = 0.1
    exact = -ncx2.logcdf(eps / scale, 40, lam) / math.log(2)  # 18.1 bits: P ~ 3e-6, below 1/K
    assert exact > math.log2(2000) + 5 and ib.counted_bias(e, eps) == math.inf
    assert ib.inductive_bias(e, eps) == pytest.approx(exact, rel=0.05)
    # where counting resolves the probability (P ~ 0.2), the two estimates agree
    eps_mid = float(e.quantile(0.2))
    assert ib.inductive_bias(e, eps_mid) == pytest.approx(ib.counted_bias(e, eps_mid), abs=0.15)


def test_fit_of_a_central_law_matches_its_moments_and_its_tail():
    e = torch.from_numpy(ncx2.rvs(30, 1e-9, scale=0.02, size=3000, random_state=1))  # central chi-squared
    k, lam, s = ib.fit_scaled_ncx2(e)
    # (k, lam, s) lie on a flat ridge (a central law is nearly a noncentral one); mean and variance are pinned
    assert s * (k + lam) == pytest.approx(float(e.mean()), rel=0.01)
    assert 2 * s * s * (k + 2 * lam) == pytest.approx(float(e.var()), rel=0.05)
    exact = -ncx2.logcdf(0.2 / 0.02, 30, 0.0) / math.log(2)  # 12.1 bits, P below 1/K
    assert ib.inductive_bias(e, 0.2) == pytest.approx(exact, rel=0.1)  # measured 11.25 (7% low: the fit's sampling error)
    assert ib.log2_probability(0.2, 30, 0.0, 0.02) == pytest.approx(ncx2.logcdf(10.0, 30, 0.0) / math.log(2), rel=1e-12)
    # far in the tail scipy's CDF is still finite; the fallback (Sankaran) is only used on underflow
    assert math.isfinite(ib.log2_probability(1e-6, 200, 30, 1.0))


def test_gp_errors_have_the_exact_mean_and_vanish_on_the_training_points():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 3, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    xt, yt = torch.rand(12, 3, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    ell = 0.4
    e = ib.gp_hypothesis_errors(x, y, xt, yt, 20000, lengthscale=ell, generator=g)
    K = ib.rbf_kernel(x, x, ell) + 1e-8 * torch.eye(30, dtype=torch.float64)
    Ks = ib.rbf_kernel(xt, x, ell)
    mean = Ks @ torch.linalg.solve(K, y)
    var = 1 - (Ks * torch.linalg.solve(K, Ks.T).T).sum(1)
    expected = float(((mean - yt).square() + var).mean())  # E e = mean((mu - y)^2 + Sigma_ii)
    assert float(e.mean()) == pytest.approx(expected, rel=4 * float(e.std()) / expected / 20000**0.5)
    # hypotheses interpolate the training data: zero error there (up to the jitter)
    assert float(ib.gp_hypothesis_errors(x, y, x[:5], y[:5], 100, lengthscale=ell, generator=g).max()) < 1e-6


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="positive test errors"):
        ib.inductive_bias(torch.tensor([0.1, -0.2] * 10), 0.1)
    with pytest.raises(ConfigError, match="eps > 0"):
        ib.log2_probability(0.0, 3, 0, 1)
    with pytest.raises(ShapeError, match="one d"):
        ib.gp_hypothesis_errors(torch.zeros(5, 2), torch.zeros(5), torch.zeros(3, 3), torch.zeros(3), 10, lengthscale=1.0)
