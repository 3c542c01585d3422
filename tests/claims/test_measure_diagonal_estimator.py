"""The diagonal-estimator measurement (Bekas, Kokiopoulou & Saad 2007): unbiased, per-entry variance
sum_{j != i} A_ij^2 / s with Rademacher probes, exact on rows without off-diagonal mass."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.diagonal_estimator import cross_entropy, diagonal_statistics, exact_hessian
from layerlab.errors import ConfigError
from layerlab.lens import curvature, hessian


def _matrix(p: int = 120, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(p, p, generator=g, dtype=torch.float64)
    a = a + a.T
    a[:10, :] = 0.0  # ten rows (and columns) with no off-diagonal mass: estimated exactly
    a[:, :10] = 0.0
    a[torch.arange(10), torch.arange(10)] = torch.arange(1.0, 11.0, dtype=torch.float64)
    return a


def test_statistics_of_the_estimator_on_a_known_matrix_match_the_closed_form():
    a = _matrix()
    est = curvature.diagonal(a, n_samples=3000, block=1000, generator=torch.Generator().manual_seed(1))
    out = diagonal_statistics(est, a)
    assert out["entries"] == 110 and out["zero_variance_entries"] == 10
    assert out["zero_variance_error"] < 1e-14
    assert abs(out["variance_ratio"] - 1) < 0.03  # per-entry sample variance vs sum_{j!=i} a_ij^2
    assert abs(out["z_sq_mean"] - 1) < 0.4  # 110 entries: mean of z^2 has sd ~0.13
    assert out["error"] == max(abs(out["z_sq_mean"] - 1), abs(out["variance_ratio"] - 1), out["zero_variance_error"])


def test_statistics_detect_a_bias_and_a_wrong_variance():
    a = _matrix()
    est = curvature.diagonal(a, n_samples=3000, block=1000, generator=torch.Generator().manual_seed(1))
    biased = dataclasses.replace(est, values=est.values + 3 * est.standard_error)  # 3 standard errors off
    assert diagonal_statistics(biased, a)["z_sq_mean"] > 5
    halved = dataclasses.replace(est, standard_error=est.standard_error / 2)
    assert diagonal_statistics(halved, a)["variance_ratio"] == pytest.approx(0.25, abs=0.02)


def test_exact_hessian_is_the_operators_dense_hessian():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    h = exact_hessian(model, (x, y))
    dense = hessian.HessianOperator(model, cross_entropy, [(x, y)]).dense()
    assert torch.allclose(h, dense, rtol=1e-10, atol=1e-13)


def test_measurement_is_unbiased_with_the_closed_form_variance():
    out = get_measure("hutchinson_diagonal")(0, n_train=32, width=4, train_steps=10, n_samples=1000, block=1000)
    assert out["params"] == 64 * 4 + 4 + 4 * 10 + 10
    assert out["zero_variance_entries"] > 0 and out["zero_variance_error"] < 1e-12  # always-0 pixels
    assert abs(out["variance_ratio"] - 1) < 0.05
    assert abs(out["z_sq_mean"] - 1) < 0.5
    assert out["symmetry_error"] < 1e-12
    with pytest.raises(ConfigError, match="n_samples >= 2"):
        get_measure("hutchinson_diagonal")(0, n_samples=1)
