"""MIP hypernetworks (arXiv:2304.07645): constant-norm encoding, the standard form's magnitude
proportionality, MIP's residual form without it, the primary network computed from the predicted weights."""
import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models.hypernetwork import Hypernetwork, encode_l2


def test_encoding_has_constant_norm():
    g = torch.rand(1000, 3, dtype=torch.float64)
    g[0] = 0.0
    g[1] = 1.0
    e = encode_l2(g)
    assert e.shape == (1000, 6)
    assert torch.allclose((e * e).sum(-1), torch.full((1000,), 3.0, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(e[0], torch.tensor([1.0, 0.0] * 3, dtype=torch.float64), atol=1e-15)


def test_standard_hypernetwork_output_is_proportional_to_input_magnitude():
    torch.manual_seed(0)
    h = Hypernetwork(2, 5, 8, 3, mip=False, dtype=torch.float64)
    g = torch.tensor([0.3, 0.7], dtype=torch.float64)
    for alpha in (0.01, 0.5, 2.0):
        assert torch.allclose(h.delta(alpha * g), alpha * h.delta(g), rtol=1e-10, atol=1e-14)
    assert h.delta(torch.zeros(2, dtype=torch.float64)).abs().max() == 0  # γ = 0: all primary weights zero


def test_mip_output_magnitude_does_not_follow_the_input():
    torch.manual_seed(0)
    h = Hypernetwork(2, 5, 8, 3, mip=True, dtype=torch.float64)
    grid = torch.tensor([[a, b] for a in (0.0, 0.01, 0.5, 1.0) for b in (0.0, 0.01, 0.5, 1.0)], dtype=torch.float64)
    norms = torch.stack([h.delta(g).norm() for g in grid])
    assert norms.min() > 0.2 * norms.max()  # every γ, even γ = 0, gives a Δθ of comparable size
    # the first hidden pre-activation sees an input of norm sqrt(k) whatever γ is
    pre = torch.stack([h.net[0].weight @ encode_l2(g) for g in grid])
    w_norm = torch.linalg.matrix_norm(h.net[0].weight, ord=2)
    assert (pre.norm(dim=-1) <= w_norm * math.sqrt(2) * (1 + 1e-12)).all()
    # residual: θ = θ_0 + Δθ
    w = torch.cat([p.flatten() for p in h.weights(grid[5])])
    assert torch.allclose(w, h.theta0 + h.delta(grid[5]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("mip", [False, True])
def test_primary_network_uses_the_predicted_weights(mip):
    torch.manual_seed(1)
    h = Hypernetwork(1, 4, 6, 2, mip=mip, dtype=torch.float64)
    g = torch.tensor([0.4], dtype=torch.float64)
    x = torch.randn(7, 4, dtype=torch.float64)
    w1, b1, w2, b2 = h.weights(g)
    assert w1.shape == (6, 4) and b2.shape == (2,) and h.n_params == 6 * 4 + 6 + 2 * 6 + 2
    expect = torch.stack([w2 @ torch.relu(w1 @ xi + b1) + b2 for xi in x])
    assert torch.allclose(h(x, g), expect, rtol=1e-12, atol=1e-14)
    h(x, g).sum().backward()  # gradients reach the hypernetwork
    assert h.net[0].weight.grad.abs().sum() > 0


def test_strict_options():
    with pytest.raises(ConfigError, match="delta_scale"):
        Hypernetwork(1, 4, 6, 2, delta_scale=0.0)
    with pytest.raises(ConfigError, match="hidden"):
        Hypernetwork(1, 4, 6, 2, hidden=0)
    h = Hypernetwork(2, 4, 6, 2)
    with pytest.raises(ShapeError, match="gamma"):
        h(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ShapeError, match="d_in"):
        h(torch.zeros(3, 5), torch.zeros(2))
