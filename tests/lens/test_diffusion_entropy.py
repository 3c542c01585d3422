"""Diffusion spectral entropy (lens.diffusion_entropy) against its closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import diffusion_entropy as de


def clusters(k: int, per: int, spread: float, seed: int = 0, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g, dtype=torch.float64) * 100.0
    y = torch.arange(k).repeat_interleave(per)
    return centres[y] + spread * torch.randn(k * per, dim, generator=g, dtype=torch.float64), y


def test_identical_points_have_zero_entropy():
    z = torch.ones(20, 4, dtype=torch.float64)
    assert de.dse(z, t=1, sigma=1.0) == pytest.approx(0.0, abs=1e-9)
    assert float(de.diffusion_eigenvalues(z, 1.0)[0]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_separated_groups_of_identical_points_give_log_k(k):
    z, y = clusters(k, 7, spread=0.0)
    for t in (1, 3):
        assert de.dse(z, t=t, sigma=1.0) == pytest.approx(math.log2(k), abs=1e-9)
    assert de.dsmi(z, y, t=1, sigma=1.0) == pytest.approx(math.log2(k), abs=1e-9)  # H(Y), classes equal


def test_noisy_groups_approach_log_k_as_t_grows_and_far_points_give_log_n():
    z, _ = clusters(4, 30, spread=1.0, seed=1)
    values = [de.dse(z, t=t, sigma=2.0) for t in (1, 4, 16, 64, 256)]
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))  # diffusion only removes entropy
    assert values[0] > math.log2(4) + 0.5 and values[-1] == pytest.approx(math.log2(4), abs=0.05)
    far = torch.eye(16, dtype=torch.float64) * 1000.0  # every pair far apart: P = I, DSE = log2 N
    assert de.dse(far, t=5, sigma=1.0) == pytest.approx(4.0, abs=1e-9)
    # the eigenvalues of D^-1 G (asymmetric) equal those of the symmetric form taken here
    g = torch.exp(-torch.cdist(z, z).square() / 8.0)
    direct = torch.linalg.eigvals(g / g.sum(1, keepdim=True)).real.sort(descending=True).values
    assert torch.allclose(direct, de.diffusion_eigenvalues(z, 2.0), atol=1e-9)


def test_errors():
    with pytest.raises(ConfigError, match="t must"):
        de.dse(torch.zeros(3, 2), t=0)
    with pytest.raises(ShapeError, match="one label"):
        de.dsmi(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ConfigError, match="sigma"):
        de.diffusion_eigenvalues(torch.zeros(3, 2), sigma=-1.0)
