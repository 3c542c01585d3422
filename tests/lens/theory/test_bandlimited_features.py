"""Bandlimited random features (arXiv:2008.08427): the ridge/least-squares fit against its exact forms."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import bandlimited_features as bf


def _phi(n: int, m: int, band: float, seed: int = 0):
    x = torch.linspace(-math.pi, math.pi, n, dtype=torch.float64)
    w, b = bf.draw_hidden(m, band, generator=torch.Generator().manual_seed(seed))
    return x, bf.features(x, w, b)


@pytest.mark.parametrize("n,m", [(200, 60), (60, 200)])  # the QR (primal) form and the dual form
def test_ridge_fit_equals_the_normal_equations(n, m):
    x, phi = _phi(n, m, 3.0)
    y = torch.sin(5 * x) + 0.3 * x
    for alpha in (1e-2, 1e-5):
        c, ref = bf.ridge_fit(phi, y, alpha), bf.ridge_fit_reference(phi, y, alpha)
        assert torch.allclose(c, ref, rtol=1e-8, atol=1e-8 * float(ref.abs().max()))


def test_projection_residual_is_orthogonal_to_the_features_and_the_span_is_reproduced():
    x, phi = _phi(300, 12, 1.0)
    y = torch.sin(2 * x) + torch.cos(7 * x)
    c = bf.ridge_fit(phi, y, 0.0)
    r = phi @ c / phi.shape[1] - y
    assert float((phi.T @ r).abs().max()) < 1e-9 * float(phi.norm() * y.norm())
    c_true = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y_in = phi @ c_true / 12
    assert bf.relative_error(phi, y_in, bf.ridge_fit(phi, y_in, 0.0)) < 1e-18


def test_fourier_features_on_a_periodic_grid_are_exactly_bandlimited():
    # cos(w x + b) with integer w <= K and b in {0, -pi/2}: sin(omega x) is reproduced exactly for
    # omega <= K and orthogonal to every feature (relative error exactly 1) for omega > K
    n, k = 64, 5
    x = -math.pi + 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    w = torch.arange(k + 1, dtype=torch.float64).repeat(2)
    b = torch.cat([torch.zeros(k + 1), torch.full((k + 1,), -math.pi / 2)]).to(torch.float64)
    phi = bf.features(x, w, b, "cos")
    for omega in range(1, 12):
        y = torch.sin(omega * x)
        e = bf.relative_error(phi, y, bf.ridge_fit(phi, y, 0.0))
        assert e == pytest.approx(0.0 if omega <= k else 1.0, abs=1e-12)


def test_bisection_finds_a_known_crossing():
    band = bf.bandwidth_for_error(lambda b: math.exp(-b), 0.01, 0.5, 20.0, iterations=40)
    assert band == pytest.approx(math.log(100), rel=1e-9)
    assert math.isnan(bf.bandwidth_for_error(lambda b: math.exp(-b), 0.01, 10.0, 20.0))  # no crossing inside


def test_bad_input():
    x, phi = _phi(10, 4, 1.0)
    with pytest.raises(ConfigError, match="unknown activation"):
        bf.features(x, torch.ones(3), torch.ones(3), "swish")
    with pytest.raises(ShapeError, match="y \\(n,\\)"):
        bf.ridge_fit(phi, torch.ones(9), 0.1)
    with pytest.raises(ConfigError, match="bandwidth"):
        bf.draw_hidden(4, 0.0)
