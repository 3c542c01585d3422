"""The condition-number entropy bound (arXiv:2506.16289's fixed-norm claim) against direct computations."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures import condition_number as C
from layerlab.errors import ConfigError


def test_entropy_is_half_logdet_and_the_bound_is_attained_and_decreasing():
    g = torch.Generator().manual_seed(0)
    n = 6
    u = C._orthogonal(n, g)
    v = C._orthogonal(n, g)
    s = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.7, 0.2], dtype=torch.float64)
    w = u @ torch.diag(s) @ v.T
    assert C.gaussian_output_entropy(w) == pytest.approx(0.5 * n * math.log(2 * math.pi * math.e)
                                                         + float(s.log().sum()), rel=1e-12)
    f = float(s.square().sum())
    # κ = 1: the AM-GM maximum; the extremal spectrum (κm, t, ..., t, m) attains h_max(κ)
    assert C.entropy_bound(n, f, 1.0) == pytest.approx(0.5 * n * math.log(2 * math.pi * math.e * f / n), rel=1e-14)
    for kappa in (1.5, 10.0, 1e3):
        m, t = math.sqrt(2 * f / (n * (1 + kappa**2))), math.sqrt(f / n)
        ext = torch.tensor([kappa * m] + [t] * (n - 2) + [m], dtype=torch.float64)
        assert float(ext.square().sum()) == pytest.approx(f, rel=1e-14)
        assert C.gaussian_output_entropy(u @ torch.diag(ext) @ v.T) == pytest.approx(C.entropy_bound(n, f, kappa),
                                                                                    abs=1e-10)
    ks = [1.0, 1.1, 2.0, 5.0, 100.0]
    assert all(C.entropy_bound(n, f, a) > C.entropy_bound(n, f, b) for a, b in zip(ks, ks[1:]))


def test_bound_is_the_maximum_over_random_spectra_with_given_kappa():
    # brute force: spectra with σ_1 = κ σ_n, random middle values in [σ_n, σ_1], scaled to F = n:
    # none exceeds h_max(κ), the best comes within 2% of the gap to the worst
    g = torch.Generator().manual_seed(1)
    n, kappa = 5, 4.0
    mid = 1 + (kappa - 1) * torch.rand(4000, n - 2, generator=g, dtype=torch.float64)
    s = torch.cat([torch.full((4000, 1), kappa, dtype=torch.float64), mid, torch.ones(4000, 1, dtype=torch.float64)], 1)
    s = s * (n / s.square().sum(1, keepdim=True)).sqrt()
    best = 0.5 * n * math.log(2 * math.pi * math.e) + float(s.log().sum(1).max())
    bound = C.entropy_bound(n, float(n), kappa)
    assert best <= bound and bound - best < 0.02


def test_measure_small():
    out = C.condition_entropy_bound(0, n=4, n_matrices=12)
    assert out["excess"] <= 1e-9 and out["extremal_gap"] <= 1e-9
    assert out["rank_correlation"] < 0 and out["log10_kappa_max"] > 1
    with pytest.raises(ConfigError, match="n >= 3"):
        C.condition_entropy_bound(0, n=2)
