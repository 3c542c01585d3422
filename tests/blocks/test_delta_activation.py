"""Delta activations (2107.07305): exact at threshold 0, reconstruction error <= threshold, the
accumulated layer = its reference, the transmitted fraction counted exactly, straight-through gradient."""
import pytest
import torch

from layerlab.blocks.delta_activation import (DeltaActivation, DeltaLinear, delta_encode, delta_l1,
                                              transmitted_fraction)
from layerlab.errors import ConfigError, ShapeError


def _walk(seed=0, B=3, T=9, N=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, N, generator=g, dtype=torch.float64).cumsum(1) * 0.3


def test_threshold_zero_is_the_dense_layer():
    x = _walk()
    lin = torch.nn.Linear(5, 4).double()
    for mode in ("accumulate", "reference"):
        y = DeltaLinear.from_linear(lin, 0.0)(x, mode=mode)
        assert torch.allclose(y, lin(x), rtol=0, atol=1e-10)
    delta, xhat = delta_encode(x, 0.0)
    assert torch.equal(xhat, x) or torch.allclose(xhat, x, rtol=0, atol=1e-12)


def test_reconstruction_within_threshold_and_count_is_exact():
    x = _walk(1)
    for theta in (0.05, 0.2, 0.5):
        delta, xhat = delta_encode(x, theta)
        assert float((xhat - x).abs().max()) <= theta + 1e-12
        # exact count by a scalar loop over units
        sent = 0
        for b in range(x.shape[0]):
            for j in range(x.shape[2]):
                last = 0.0
                for t in range(x.shape[1]):
                    d = float(x[b, t, j]) - last
                    if abs(d) > theta:
                        sent += 1
                        last += d
        layer = DeltaActivation(theta)
        layer(x)
        assert layer.transmitted == sent == int((delta != 0).sum()) and layer.total == x.numel()
        assert transmitted_fraction(torch.nn.Sequential(layer)) == sent / x.numel()


def test_accumulated_layer_equals_reference_and_sparsity_grows_with_threshold():
    x = _walk(2)
    lin = torch.nn.Linear(5, 3).double()
    fractions = []
    for theta in (0.0, 0.1, 0.3, 1.0):
        a, r = DeltaLinear.from_linear(lin, theta), DeltaLinear.from_linear(lin, theta)
        assert torch.allclose(a(x), r(x, mode="reference"), rtol=0, atol=1e-10)
        fractions.append(transmitted_fraction(a))
    assert fractions[0] == 1.0 and all(f1 >= f2 for f1, f2 in zip(fractions, fractions[1:])) and fractions[-1] < 0.5


def test_straight_through_gradient_and_penalty():
    x = _walk(3).requires_grad_()
    DeltaActivation(0.3)(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    y = torch.tensor([[[0.0], [1.0], [-1.0]]])
    assert float(delta_l1(y)) == pytest.approx(1.5)
    with pytest.raises(ConfigError, match=">= 0"):
        DeltaActivation(-0.1)
    with pytest.raises(ShapeError, match="B, T, N"):
        delta_encode(torch.zeros(3, 4), 0.1)
