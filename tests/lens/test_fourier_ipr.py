"""Fourier IPR (Doshi et al. 2023, arXiv:2310.13061) against exact values and the reference DFT."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.fourier_ipr import (dft, dft_reference, dominant_frequency, fourier_ipr, frequency_power, ipr,
                                       neuron_ipr)


def _cos(p: int, k: int, phase: float) -> torch.Tensor:
    return torch.cos(2 * math.pi * k * torch.arange(p, dtype=torch.float64) / p + phase)


def test_fast_dft_equals_reference_and_is_unitary():
    g = torch.Generator().manual_seed(0)
    for p in (1, 2, 7, 12, 23):
        w = torch.randn(3, p, 5, generator=g, dtype=torch.float64)
        ref, fast = dft_reference(w, dim=1), dft(w, dim=1)
        assert (fast - ref).abs().max() <= 1e-12 * max(1.0, float(ref.abs().max()))
        assert torch.allclose(fast.abs().square().sum(1), w.square().sum(1), rtol=1e-12, atol=0)  # Parseval
    w32 = torch.randn(4, 31, generator=g)  # float32 input: promoted to float64, same values
    assert (dft(w32) - dft_reference(w32.double())).abs().max() < 1e-12


def test_frequency_power_folds_conjugate_pairs():
    g = torch.Generator().manual_seed(1)
    for p in (2, 9, 10, 23):
        w = torch.randn(6, p, generator=g, dtype=torch.float64)
        P = frequency_power(w)
        assert P.shape == (6, p // 2 + 1)
        assert torch.allclose(P.sum(-1), w.square().sum(-1), rtol=1e-12, atol=0)
        full = dft(w).abs().square()
        assert torch.allclose(P[:, 0], full[:, 0], rtol=1e-12, atol=1e-15)
        if p % 2 == 0:  # the Nyquist frequency has no partner
            assert torch.allclose(P[:, p // 2], full[:, p // 2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("p", [7, 23, 31])
def test_exact_values_single_frequency_delta_constant(p):
    for k in range(1, (p + 1) // 2):
        for phase in (0.0, 0.7, 2.9):
            w = 3.0 * _cos(p, k, phase)
            assert fourier_ipr(w).item() == pytest.approx(1.0, abs=1e-12)              # one frequency, any phase
            assert fourier_ipr(w, fold=False).item() == pytest.approx(0.5, abs=1e-12)  # +k and -k share it
            assert dominant_frequency(w).item() == k
    delta = torch.zeros(p, dtype=torch.float64)
    delta[3] = -2.0
    assert fourier_ipr(delta, fold=False).item() == pytest.approx(1.0 / p, rel=1e-12)   # flat spectrum
    assert fourier_ipr(delta).item() == pytest.approx((2 * p - 1) / p**2, rel=1e-12)   # 1 + (p-1)/2 pairs of 2/p
    const = torch.full((p,), 0.4, dtype=torch.float64)
    assert fourier_ipr(const).item() == pytest.approx(1.0, abs=1e-12)
    assert fourier_ipr(const, fold=False).item() == pytest.approx(1.0, abs=1e-12)
    # two frequencies of equal power: IPR 1/2 (folded); of powers 3:1, (9 + 1)/16
    two = _cos(23, 2, 0.3) + _cos(23, 5, 1.1)
    assert fourier_ipr(two).item() == pytest.approx(0.5, abs=1e-12)
    uneven = math.sqrt(3) * _cos(23, 2, 0.3) + _cos(23, 5, 1.1)
    assert fourier_ipr(uneven).item() == pytest.approx(10 / 16, abs=1e-12)


def test_ipr_general_r_and_scale_invariance():
    v = torch.tensor([3.0, -4.0, 0.0, 12.0], dtype=torch.float64)  # |v|^2 = 9, 16, 0, 144 (sum 169)
    assert ipr(v).item() == pytest.approx((81 + 256 + 144**2) / 169**2, rel=1e-14)
    assert ipr(v, r=3).item() == pytest.approx((9**3 + 16**3 + 144**3) / 169**3, rel=1e-14)
    assert ipr(7.5 * v).item() == pytest.approx(ipr(v).item(), rel=1e-14)
    assert ipr(torch.tensor([1j, 1.0])).item() == pytest.approx(0.5, rel=1e-14)  # complex: by modulus
    assert math.isnan(ipr(torch.zeros(5)).item())
    assert ipr(1e-200 * v).item() == pytest.approx(ipr(v).item(), rel=1e-14)  # no underflow of |v|^4
    tiny = 1e-200 * _cos(23, 4, 0.5)  # a node decayed to 1e-200 by weight decay is still one frequency
    assert fourier_ipr(tiny).item() == pytest.approx(1.0, abs=1e-12)


def test_random_gaussian_weights_are_delocalised():
    # E[IPR] of a Gaussian vector's folded spectrum is about 2 / (number of frequencies): low, far from 1
    g = torch.Generator().manual_seed(2)
    w = torch.randn(2000, 23, generator=g, dtype=torch.float64)
    m = fourier_ipr(w).mean().item()
    assert 0.1 < m < 0.2


def test_neuron_ipr_blocks_of_an_mlp():
    p, n = 11, 5
    u = torch.zeros(n, 2 * p, dtype=torch.float64)
    u[0, :p], u[0, p:] = _cos(p, 3, 0.2), _cos(p, 3, 1.0)  # a periodic neuron
    u[1, 4], u[1, p + 7] = 1.0, 1.0                      # a lookup (memorizing) neuron
    u[2:] = torch.randn(3, 2 * p, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    w = torch.randn(p, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    w[:, 0] = _cos(p, 3, 2.0)
    out = neuron_ipr(u, w, p=p)
    assert out.shape == (n, 3)
    assert torch.allclose(out[0], torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert out[1, :2].tolist() == pytest.approx([(2 * p - 1) / p**2] * 2, rel=1e-12)
    assert torch.equal(neuron_ipr(u, p=p), out[:, :2])
    assert torch.allclose(out[2:, 2], fourier_ipr(w[:, 2:].T), rtol=0, atol=0)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="r must be"):
        ipr(torch.ones(3), r=0.5)
    with pytest.raises(ShapeError, match="n_operands"):
        neuron_ipr(torch.ones(4, 10), p=3)
    with pytest.raises(ShapeError, match="readout"):
        neuron_ipr(torch.ones(4, 6), torch.ones(3, 5), p=3)
    with pytest.raises(ConfigError, match="real weights"):
        fourier_ipr(torch.ones(4, dtype=torch.complex64))
    with pytest.raises(ShapeError, match="at least 2"):
        fourier_ipr(torch.ones(3, 1))
