"""Feature contamination (arXiv:2406.03345): the background gradient's closed form and the linear model's exact cancellation."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import feature_contamination as fc


def _data(seed: int, dc: int = 4, db: int = 5, d: int = 12, pairs: int = 40):
    g = torch.Generator().manual_seed(seed)
    p = fc.orthonormal_rows(dc + db, d, g)
    zc, zb, y = fc.paired_sample(pairs, dc, db, g)
    return g, p, torch.cat([zc, zb], 1) @ p, y


def test_orthonormal_rows_and_the_embedding_recover_the_activations():
    g, p, x, y = _data(0)
    assert torch.allclose(p @ p.T, torch.eye(9, dtype=torch.float64), atol=1e-14)
    zc, zb, y2 = fc.sample(10, 4, 5, g, ood=True)
    assert bool((zb <= 0).all()) and bool(((zc * y2[:, None]) >= 0).all()) and float(y2.sum()) == 0


def test_background_gradient_closed_form_equals_autograd():
    g, p, x, y = _data(1)
    bg = p[4:]
    w = 0.3 * torch.randn(6, 12, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, 1, 1, -1, -1, -1], dtype=torch.float64) / 6
    (grad,) = torch.autograd.grad(fc.logistic_loss(fc.relu_forward(w, a, x), y), [w])
    assert torch.allclose(fc.background_gradient(w.detach(), a, x, y, bg), grad @ bg.T, atol=1e-15, rtol=1e-12)
    v = 0.3 * torch.randn(1, 12, generator=g, dtype=torch.float64, requires_grad=True)
    (gv,) = torch.autograd.grad(fc.logistic_loss((x @ v.T)[:, 0], y), [v])
    assert torch.allclose(fc.background_gradient(v.detach(), None, x, y, bg), gv @ bg.T, atol=1e-15, rtol=1e-12)


def test_linear_model_never_learns_the_background_and_a_relu_neuron_does():
    g, p, x, y = _data(2)
    core, bg = p[:4], p[4:]
    v0 = torch.randn(1, 4, generator=g, dtype=torch.float64) @ core  # no background component
    assert float(fc.background_gradient(v0, None, x, y, bg).abs().max()) < 1e-16  # the pairs cancel exactly
    v = fc.train(v0, None, x, y, steps=200, lr=1.0)
    assert float((v @ bg.T).abs().max()) < 1e-14 and float(fc.logistic_loss((x @ v.T)[:, 0], y)) < 0.05
    # a neuron along the core fires on y = +1 only: every background coordinate of its gradient is < 0
    w = torch.ones(1, 4, dtype=torch.float64) @ core
    gb = fc.background_gradient(w, torch.tensor([1.0], dtype=torch.float64), x, y, bg)
    assert bool((gb < -1e-3).all())
    wt = fc.train(w, torch.tensor([1.0], dtype=torch.float64), x, y, steps=100, lr=1.0)
    assert bool(((wt @ bg.T) > 0.01).all())


def test_bad_input():
    with pytest.raises(ConfigError, match="k <= d"):
        fc.orthonormal_rows(5, 3)
    with pytest.raises(ShapeError, match="w \\(m, d\\)"):
        fc.relu_forward(torch.zeros(3, 4), torch.zeros(2), torch.zeros(5, 4))
