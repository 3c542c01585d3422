"""The Kumar-initialization variance measurement (arXiv:1704.08863)."""
import math

import numpy as np
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.kumar_init import activation_variances, drift
from layerlab.errors import ConfigError


def gauss_hermite_variance(f, var):
    """Var f(z) for z ~ N(0, var), by 80-point Gauss-Hermite quadrature."""
    t, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    y = f(np.sqrt(var) * t)
    return float((w * y**2).sum() - (w * y).sum() ** 2)


def test_first_layer_variance_matches_quadrature():
    """Layer 1 of a sigmoid net under Kumar's rule: z ~ N(0, N Var(w)) = N(0, 12.8) in expectation."""
    out = get_measure("kumar_init_variance")(0, activation="sigmoid", depth=1, width=256, batch=4096)
    expected = gauss_hermite_variance(lambda z: 1 / (1 + np.exp(-z)), 12.8)
    # finite width and batch: the realised N Var(w) and the sample variance fluctuate by ~1-2%
    assert out["var_first"] == pytest.approx(expected, rel=0.05)
    assert out["pre_var_first"] == pytest.approx(12.8, rel=0.05)
    assert out["error"] == 0.0  # one layer: nothing to drift from


def test_drift_is_the_largest_log_factor():
    assert drift([2.0, 1.0, 8.0]) == pytest.approx(math.log(4))
    assert drift([1.0, 0.0]) == math.inf


def test_linear_regime_keeps_variance_and_small_weights_lose_it():
    """tanh with tiny inputs is linear: Var(w) = 1/N keeps the variance (finite-width fluctuations only);
    ReLU at Var(w) = 1/N (LeCun, not Kumar's 2/N) halves it at every layer: E relu(z)^2 = Var(z)/2."""
    g = torch.Generator().manual_seed(0)
    x = 1e-3 * torch.randn(512, 256, generator=g, dtype=torch.float64)
    acts, _ = activation_variances(x, "tanh", "lecun", 10, g)
    assert drift(acts) < 0.5
    x2 = 1e-3 * torch.randn(512, 256, generator=g, dtype=torch.float64)
    halves = activation_variances(x2, "relu", "lecun", 10, g)[0]
    assert drift(halves) > 0.5 * 9 * math.log(2)


def test_sigmoid_kumar_vs_xavier_and_bad_options():
    out = get_measure("kumar_init_variance")(1, activation="sigmoid", depth=20, width=128, batch=256)
    assert out["var_first"] > 2 * out["compare_var_first"]  # Kumar's 12.8/N vs Xavier's 1/N
    with pytest.raises(ConfigError, match="scheme must be one of"):
        get_measure("kumar_init_variance")(0, scheme="orthogonal")
    with pytest.raises(ConfigError, match="depth >= 1"):
        get_measure("kumar_init_variance")(0, depth=0)
