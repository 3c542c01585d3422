"""Wiatowski & Bölcskei (arXiv:1512.06293): frame bounds, energy, non-expansiveness and Theorem 1, exactly."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import scattering as sc


def _signals(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("make", [sc.morlet_bank, sc.gabor_bank])
def test_frame_energy_is_the_littlewood_paley_weighted_spectrum_within_the_bounds(make):
    f = _signals(5, 96, 0)
    bank = make(96)
    a, b = bank.bounds()
    assert 0 < a < b and b == pytest.approx(1.0, abs=1e-12)
    low, high = sc.frame_analysis(f, bank)
    energy = low.abs().square().sum(-1) + high.abs().square().sum((-2, -1))
    spectrum = torch.fft.fft(f).abs().square()
    exact = (sc.littlewood_paley(bank) * spectrum).sum(-1) / 96  # Parseval on the DFT
    assert torch.allclose(energy, exact, rtol=1e-12)
    norm2 = f.square().sum(-1)
    assert bool((energy >= a * norm2 * (1 - 1e-12)).all() and (energy <= b * norm2 * (1 + 1e-12)).all())
    tight = make(96, tight=True)
    lo, hi = sc.frame_analysis(f, tight)
    assert torch.allclose(lo.abs().square().sum(-1) + hi.abs().square().sum((-2, -1)), norm2, rtol=1e-12)


def test_parseval_bank_with_modulus_conserves_energy_and_admissible_nets_lose_it():
    f = _signals(4, 64, 1)
    total, norm2 = sc.energy_budget(f, 3, scales=3, tight=True)
    assert torch.allclose(total, norm2, rtol=1e-12)
    for opts in (dict(pools=[2, 2, 2]), dict(nonlinearity="relu"), dict(bank="gabor", n_bands=4, pools=[2, 2, 2])):
        total, norm2 = sc.energy_budget(f, 3, **opts)
        assert bool((total <= norm2 * (1 + 1e-12)).all()) and bool((total < 0.999 * norm2).any())


def test_feature_extractor_is_non_expansive():
    f, h = _signals(6, 64, 2), _signals(6, 64, 3)
    for opts in (dict(pools=[2, 2, 1]), dict(nonlinearity="tanh"), dict(bank="gabor", n_bands=3)):
        pf, _ = sc.features(f, 3, **opts)
        ph, _ = sc.features(h, 3, **opts)
        dist2 = sum((x - y).square().sum((1, 2)) for x, y in zip(pf, ph))
        assert bool((dist2 <= (f - h).square().sum(-1) * (1 + 1e-12)).all())


def test_translation_covariance_and_the_discrete_theorem_1_bound():
    f = _signals(3, 128, 4)
    # no pooling: every layer is exactly covariant, Phi^n(T_t f) = T_t Phi^n(f)
    a, _ = sc.features(f, 3, scales=3)
    b, _ = sc.features(torch.roll(f, 5, -1), 3, scales=3)
    for x, y in zip(a, b):
        assert torch.allclose(torch.roll(x, 5, -1), y, atol=1e-12)
    # pooling by 2: a shift by 8 is a shift by 8 / 2^n at layer n
    a, _ = sc.features(f, 3, scales=3, pools=[2, 2, 2])
    b, _ = sc.features(torch.roll(f, 8, -1), 3, scales=3, pools=[2, 2, 2])
    for n, (x, y) in enumerate(zip(a, b)):
        assert torch.allclose(torch.roll(x, 8 // 2**n, -1), y, atol=1e-12)
    diff, _ = sc.translation_sensitivity(f, 8, 3, scales=3, pools=[2, 2, 2])
    bound = sc.translation_bound(128, 8, 3, scales=3, pools=[2, 2, 2])
    assert bool((diff <= bound * f.norm(dim=1, keepdim=True)).all())
    assert float(bound[1]) == pytest.approx(float(bound[0]) / 2, rel=1e-12)  # same filters per layer: K / (S_1 ... S_n)


def test_average_pooling_is_non_expansive_where_subsampling_is_not():
    impulse = torch.zeros(1, 8, dtype=torch.float64)
    impulse[0, 0] = 1.0
    assert float(sc.pool(impulse, 4).square().sum()) == pytest.approx(0.25)  # S^{1/2} f[S k] would give 4
    x = _signals(10, 12, 5)
    assert bool((sc.pool(x, 3).square().sum(-1) <= x.square().sum(-1) + 1e-12).all())


def test_bad_input():
    with pytest.raises(ConfigError, match="divide"):
        sc.features(_signals(1, 30, 0), 2, pools=[4])
    with pytest.raises(ShapeError, match="length"):
        sc.frame_analysis(_signals(1, 30, 0), sc.morlet_bank(32))
    with pytest.raises(ConfigError, match="nonlinearity"):
        sc.features(_signals(1, 32, 0), 2, nonlinearity="gelu")
