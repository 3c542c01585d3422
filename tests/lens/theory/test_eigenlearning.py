"""The KRR eigenframework (Simon et al. 2023, arXiv:2311.14646): the effective ridge against its
closed form for a flat spectrum, the conservation law, the isotropic ridgeless risk against the
known high-dimensional limit, and the prediction against kernel ridge regression on Gaussian data."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures.eigenlearning import krr_test_mse, powerlaw_task
from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory.eigenlearning import effective_ridge, krr_risk, learnabilities


@pytest.mark.parametrize("m,n,ridge", [(50, 20, 0.0), (50, 20, 0.3), (10, 30, 0.05), (1000, 999, 0.0)])
def test_effective_ridge_of_a_flat_spectrum_is_the_quadratic_root(m: int, n: int, ridge: float) -> None:
    # m equal eigenvalues lam: m lam/(lam + k) + ridge/k = n  <=>  n k^2 + (n lam - m lam - ridge) k - ridge lam = 0
    lam = 0.7
    b = n * lam - m * lam - ridge
    exact = (-b + math.sqrt(b * b + 4 * n * ridge * lam)) / (2 * n)
    assert effective_ridge([lam] * m, n, ridge) == pytest.approx(exact, rel=1e-12)


def test_conservation_law_and_monotonicity() -> None:
    lam, _ = powerlaw_task(500, 1.3, 1.0)
    for ridge in (0.0, 1e-3, 0.1, 10.0):
        k = effective_ridge(lam, 40, ridge)
        assert float(learnabilities(lam, k).sum()) + ridge / k == pytest.approx(40, rel=1e-12)
    ks = [effective_ridge(lam, 40, r) for r in (0.0, 0.01, 0.1, 1.0)]
    assert ks == sorted(ks) and len(set(ks)) == 4  # more ridge, more effective ridge
    assert effective_ridge(lam, 80) < effective_ridge(lam, 40)  # more data, less


def test_isotropic_ridgeless_risk_is_the_known_limit() -> None:
    """d equal eigenvalues, n < d, ridge 0: excess risk (1 - n/d)|beta|^2 + s2 n/(d - n) (Hastie,
    Montanari, Rosset & Tibshirani 2019, min-norm interpolation, isotropic features)."""
    d, n, s2 = 300, 100, 0.2
    v = torch.randn(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = krr_risk([1.0 / d] * d, v, n, 0.0, s2)
    gamma = d / n
    assert p.test_mse - s2 == pytest.approx((1 - 1 / gamma) * float(v.square().sum()) + s2 / (gamma - 1), rel=1e-12)
    assert p.overfitting_coefficient == pytest.approx(gamma / (gamma - 1), rel=1e-12)
    assert p.train_mse == 0.0


def test_prediction_matches_kernel_ridge_regression_on_gaussian_data() -> None:
    """Mean over 12 draws of exact KRR test/train MSE (linear kernel, power-law Gaussian data,
    n = 128, 1000 modes) within 5% of the prediction (measured: ~1-2%); zero ridge interpolates."""
    lam, v = powerlaw_task(1000, 1.5, 1.5)
    n, noise = 128, 0.1
    k0 = effective_ridge(lam, n)
    ridges = [0.0, 0.3 * n * k0, 3 * n * k0]
    gen = torch.Generator().manual_seed(1)
    te = torch.zeros(3, dtype=torch.float64)
    tr = torch.zeros(3, dtype=torch.float64)
    for _ in range(12):
        a, b = krr_test_mse(lam, v, n, ridges, noise, gen)
        te += torch.tensor(a, dtype=torch.float64) / 12
        tr += torch.tensor(b, dtype=torch.float64) / 12
    for i, r in enumerate(ridges):
        p = krr_risk(lam, v, n, r, noise)
        assert te[i] == pytest.approx(p.test_mse, rel=0.05)
        if r > 0:
            assert tr[i] == pytest.approx(p.train_mse, rel=0.05)
    assert tr[0] < 1e-12
    # the test can fail: a wrong noise level is off by far more than 5%
    assert abs(float(te[0]) - krr_risk(lam, v, n, 0.0, 0.0).test_mse) > 0.2 * float(te[0])


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="more than n"):
        effective_ridge([1.0, 0.5, 0.1], 3)
    with pytest.raises(ConfigError, match=">= 0"):
        effective_ridge([1.0, 0.5], 1, -0.1)
    with pytest.raises(ConfigError, match="eigenvalues"):
        effective_ridge([1.0, -1.0], 1, 0.1)
    with pytest.raises(ShapeError, match="coefficients"):
        krr_risk([1.0, 0.5], [1.0], 1, 0.1)
