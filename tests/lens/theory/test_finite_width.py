"""PDLT's finite-width kurtosis at criticality (Roberts, Yaida & Hanin 2021, arXiv:2106.10165)
against exact width-1 networks, Gaussian quadrature of the activation moments, and its own
layer recursion."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from layerlab.errors import ConfigError, UnknownNameError
from layerlab.lens.theory.finite_width import (critical_weight_variance, excess_kurtosis, excess_kurtosis_widths,
                                               kurtosis_coefficient, leading_order_kurtosis, scale_invariant_moments)


def gaussian_moment(f, k):
    """E[f(z)^k] for z ~ N(0, 1), by quadrature."""
    return quad(lambda z: f(z) ** k * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40, points=[0.0])[0]


def test_book_values_linear_2_relu_5():
    assert kurtosis_coefficient("linear") == 2.0 and kurtosis_coefficient("relu") == 5.0
    assert critical_weight_variance("linear") == 1.0 and critical_weight_variance("relu") == 2.0
    assert scale_invariant_moments("relu") == (0.5, 0.5)


@pytest.mark.parametrize("activation,slope", [("linear", 0.0), ("relu", 0.0), ("leaky_relu", 0.2)])
def test_moments_match_gaussian_quadrature(activation, slope):
    sigma = {"linear": lambda z: z, "relu": lambda z: max(z, 0.0),
             "leaky_relu": lambda z: z if z >= 0 else slope * z}[activation]
    a2, a4 = scale_invariant_moments(activation, slope)
    assert gaussian_moment(sigma, 2) == pytest.approx(a2, rel=1e-9)  # E[sigma(z)^2] = A_2 G
    assert gaussian_moment(sigma, 4) == pytest.approx(3 * a4, rel=1e-9)  # E[sigma(z)^4] = 3 A_4 G^2
    # criticality: C_W E[sigma(z)^2] = 1 keeps E[z^2] fixed from layer to layer
    assert critical_weight_variance(activation, slope) * gaussian_moment(sigma, 2) == pytest.approx(1.0, rel=1e-9)


def test_width_one_networks_are_exact():
    # n = 1: z^(l) = w_l sigma(z^(l-1)) with scalar Gaussian w. Deep linear: E[z^4]/E[z^2]^2 = 3^l exactly
    # (a product of l independent Gaussians); ReLU: each layer multiplies the ratio by
    # E[w^4]E[relu^4]/(E[w^2]E[relu^2])^2 = 3 * (3/2) / (1/2)^2 / 3 = 6.
    ell = torch.arange(1, 9, dtype=torch.float64)
    assert torch.allclose(excess_kurtosis(ell, 1, "linear"), 3.0**ell - 3, rtol=1e-13)
    assert torch.allclose(excess_kurtosis(ell, 1, "relu"), 3 * 6.0 ** (ell - 1) - 3, rtol=1e-13)


def test_recursion_reference_and_first_order():
    for act in ("linear", "relu", "leaky_relu"):
        closed = excess_kurtosis(torch.arange(1, 11), 24, act, 0.3)
        assert torch.allclose(excess_kurtosis_widths([24] * 9, act, 0.3), closed, rtol=1e-12, atol=0)
        assert closed[0] == 0  # the first layer is exactly Gaussian
        # first order in 1/n: relative gap O(l c / n)
        big = 1e6
        lo = leading_order_kurtosis(torch.arange(2, 11), big, act, 0.3)
        assert torch.allclose(excess_kurtosis(torch.arange(2, 11), big, act, 0.3), lo, rtol=1e-4)
    # unequal widths: the product of the per-layer factors
    w = [4, 16, 64]
    got = excess_kurtosis_widths(w, "relu")
    assert got[-1].item() == pytest.approx(3 * ((1 + 5 / 4) * (1 + 5 / 16) * (1 + 5 / 64) - 1), rel=1e-14)


def test_bad_input_is_explained():
    with pytest.raises(UnknownNameError, match="tanh"):
        kurtosis_coefficient("tanh")
    with pytest.raises(ConfigError, match="width"):
        excess_kurtosis(3, 0.5)
    with pytest.raises(ConfigError, match="integers >= 1"):
        excess_kurtosis(0, 8)
