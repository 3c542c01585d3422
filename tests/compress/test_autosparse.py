"""AutoSparse: the mask is exactly |w| > sigmoid(s); the GA gradients equal the closed form (exact)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.compress.autosparse import (AutoSparseLinear, annealed_alpha, sparse_weight, train_autosparse)
from layerlab.errors import ConfigError


def test_mask_and_annealed_gradient_closed_form():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 7, generator=g, dtype=torch.float64)
    up = torch.randn(5, 7, generator=g, dtype=torch.float64)
    for alpha in (0.0, 0.3, 1.0):
        w = w0.clone().requires_grad_(True)
        s = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
        tau = 1 / (1 + math.exp(0.4))
        out = sparse_weight(w, s, alpha)
        keep = w0.abs() > tau
        assert torch.equal(out == 0, ~keep)
        assert torch.allclose(out[keep], (torch.sign(w0) * (w0.abs() - tau))[keep], rtol=0, atol=1e-15)
        (out * up).sum().backward()
        scale = torch.where(keep, torch.ones_like(w0), torch.full_like(w0, alpha))
        assert torch.allclose(w.grad, up * scale, rtol=0, atol=1e-15)
        ds = -tau * (1 - tau) * (up * torch.sign(w0) * scale).sum()
        assert float(s.grad) == pytest.approx(float(ds), rel=1e-12, abs=1e-15)


def test_schedule_and_training():
    assert annealed_alpha(0, 10) == 1.0 and annealed_alpha(5, 10) == pytest.approx(0.5, abs=1e-15)
    assert annealed_alpha(10, 10) == 0.0 and annealed_alpha(3, 10, 0.5) == pytest.approx(0.25 * (1 + math.cos(0.3 * math.pi)))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    out = train_autosparse(net, x, y, steps=5, lr=1e-2, seed=0, lam=1.0)
    assert isinstance(out[0], nn.Linear) and isinstance(net[0], nn.Linear)
    lin = AutoSparseLinear(net[0], s_init=0.0)
    with torch.no_grad():
        assert torch.equal(lin.export().weight == 0, net[0].weight.abs() <= 0.5)
    with pytest.raises(ConfigError, match="mode"):
        train_autosparse(net, x, y, steps=1, lr=1e-2, seed=0, lam=0.0, mode="soft")
    with pytest.raises(ConfigError, match="alpha"):
        sparse_weight(torch.ones(2), torch.tensor(0.0), 2.0)
