"""Clones that keep only low-order statistics (lens.simplicity) against the data's exact moments."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import simplicity


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(40)
    x = torch.randn(120, 5, generator=g, dtype=torch.float64) ** 3 + y[:, None]  # non-Gaussian classes
    x[:, 4] = 2.0  # a constant feature: singular covariance
    return x, y


def test_gaussian_clones_have_each_class_mean_and_covariance_exactly():
    x, y = data()
    cx, cy = simplicity.gaussian_clones(x, y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(cy, y)
    for c in range(3):
        a, b = x[y == c], cx[cy == c]
        assert torch.allclose(b.mean(0), a.mean(0), atol=1e-10)
        assert torch.allclose(torch.cov(b.T, correction=0), torch.cov(a.T, correction=0), atol=1e-10)
        # the third moments are not kept: the cubes' skew is gone
        skew = lambda v: ((v - v.mean(0)) ** 3).mean(0)  # noqa: E731
        assert float((skew(a) - skew(b))[:4].abs().max()) > 0.5


def test_mean_clones_keep_the_mean_and_the_total_variance_only():
    x, y = data()
    cx, cy = simplicity.gaussian_clones(x, y, generator=torch.Generator().manual_seed(2), order="mean", n_per_class=50)
    for c in range(3):
        a, b = x[y == c], cx[cy == c]
        assert b.shape == (50, 5) and torch.allclose(b.mean(0), a.mean(0), atol=1e-10)
        cov = torch.cov(b.T, correction=0)
        assert torch.allclose(cov, torch.eye(5, dtype=torch.float64) * torch.cov(a.T, correction=0).trace() / 5, atol=1e-10)


def test_errors():
    x, y = data()
    with pytest.raises(ConfigError, match="order"):
        simplicity.gaussian_clones(x, y, generator=torch.Generator(), order="third")
    with pytest.raises(ConfigError, match="exact moments"):
        simplicity.gaussian_clones(x, y, generator=torch.Generator(), n_per_class=4)
    with pytest.raises(ShapeError):
        simplicity.gaussian_clones(x, y[:5], generator=torch.Generator())
