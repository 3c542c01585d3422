"""Li_2 energy (Tian 2025, arXiv:2509.21519): closed form on modular addition, its maxima, the eta limit."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.fourier_ipr import dominant_frequency, fourier_ipr
from layerlab.lens.theory.feature_emergence import (backprop_gradient, centred_targets, energy, energy_ascent,
                                                    energy_gradient, fourier_energy, fourier_feature, max_energy,
                                                    modular_addition_data)


def _table(M: int):
    x, labels = modular_addition_data(M)
    return x, centred_targets(labels, M)


@pytest.mark.parametrize("M", [7, 12, 23])
def test_energy_on_the_full_table_equals_its_fourier_form(M):
    x, yt = _table(M)
    w = torch.randn(20, 2 * M, generator=torch.Generator().manual_seed(M), dtype=torch.float64)
    direct = energy(w, x, yt)
    closed = fourier_energy(w[:, :M], w[:, M:])
    assert torch.allclose(direct, closed, rtol=1e-10, atol=0)


def test_gradient_is_the_gradient_of_the_energy():
    M = 11
    x, labels = modular_addition_data(M, torch.randint(0, M, (60, 2), generator=torch.Generator().manual_seed(0)))
    yt = centred_targets(labels, M)
    for activation in ("square", "relu"):
        w = torch.randn(4, 2 * M, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
        auto, = torch.autograd.grad(energy(w, x, yt, activation).sum(), w)
        assert torch.allclose(energy_gradient(w.detach(), x, yt, activation), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("M", [11, 23, 31])
def test_fourier_features_are_the_maxima(M):
    x, yt = _table(M)
    best = max_energy(M)
    assert best == M / 4
    for k in range(1, (M + 1) // 2):
        for pa, pb in ((0.0, 0.0), (0.4, 2.2), (3.0, -1.0)):
            assert energy(fourier_feature(M, k, pa, pb), x, yt).item() == pytest.approx(best, rel=1e-12)
    # unequal halves: M s t with s + t = 1 (here s = 0.8)
    j = torch.arange(M, dtype=torch.float64)
    c = torch.cos(2 * math.pi * 3 * j / M)
    w = torch.cat([math.sqrt(0.8) * c / c.norm(), math.sqrt(0.2) * c / c.norm()])
    assert energy(w, x, yt).item() == pytest.approx(M * 0.8 * 0.2, rel=1e-12)
    # two frequencies with equal power: M (1/16 + 1/16) = M/8, half the maximum
    two = fourier_feature(M, 1, 0.3, 0.1) + fourier_feature(M, 4, 1.0, 2.0)
    assert energy(two / two.norm(), x, yt).item() == pytest.approx(M / 8, rel=1e-12)
    # no unit node exceeds M/4 (5000 random directions)
    w = torch.randn(5000, 2 * M, generator=torch.Generator().manual_seed(M), dtype=torch.float64)
    assert float(energy(w / w.norm(dim=1, keepdim=True), x, yt).max()) < best


def test_even_modulus_nyquist_feature():
    M = 10
    x, yt = _table(M)
    alt = torch.tensor([(-1.0) ** a for a in range(M)], dtype=torch.float64)
    w = torch.cat([alt, alt]) / math.sqrt(2 * M)
    assert energy(w, x, yt).item() == pytest.approx(max_energy(M), rel=1e-12)
    assert max_energy(M) == M / 2


def test_backpropagated_gradient_tends_to_the_energy_gradient():
    # eta * (-dL/dW) at the ridge optimum -> grad E per node, with an error O(||F||^2 / eta)
    M = 7
    x, labels = modular_addition_data(M, torch.randint(0, M, (30, 2), generator=torch.Generator().manual_seed(2)))
    yt = centred_targets(labels, M)
    w = 0.3 * torch.randn(5, 2 * M, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = energy_gradient(w, x, yt)
    errs = []
    for eta in (1e3, 1e5, 1e7):
        g = eta * backprop_gradient(w, x, yt, eta)
        errs.append(float((g - target).norm() / target.norm()))
    assert errs[2] < 1e-5, errs
    assert errs[1] / errs[2] > 50 and errs[0] / errs[1] > 50


def test_ascent_from_random_starts_reaches_fourier_features():
    M = 11
    x, yt = _table(M)
    w0 = torch.randn(8, 2 * M, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    w = energy_ascent(w0, x, yt, steps=200)  # converges to machine precision in ~100 steps
    e = energy(w, x, yt)
    assert torch.allclose(e, torch.full_like(e, M / 4), rtol=1e-8, atol=0)
    u, v = w[:, :M], w[:, M:]
    assert float(fourier_ipr(u).min()) > 1 - 1e-8 and float(fourier_ipr(v).min()) > 1 - 1e-8
    assert torch.equal(dominant_frequency(u), dominant_frequency(v))
    assert torch.allclose(u.norm(dim=1), v.norm(dim=1), rtol=1e-6)


def test_bad_input_is_a_clear_error():
    x, yt = _table(5)
    with pytest.raises(ConfigError, match="activation"):
        energy(torch.ones(10), x, yt, "tanh")
    with pytest.raises(ShapeError):
        energy(torch.ones(9), x, yt)
    with pytest.raises(ConfigError, match="frequency"):
        fourier_feature(11, 6)
    with pytest.raises(ConfigError, match="eta"):
        backprop_gradient(torch.ones(2, 10), x, yt, 0.0)
