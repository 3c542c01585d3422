"""Kumar et al. 2023 (arXiv:2310.06110): the centred model alpha (f - f0) and its lazy (NTK) limit."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import ntk
from layerlab.lens.theory import TwoLayerReLU
from layerlab.lens.theory.lazy_rich import (CentredModel, lazy_loss, linearized_trajectory,
                                            target_weight_alignment)


def _setup(seed: int = 0, n: int = 12, d: int = 5, width: int = 256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    model = TwoLayerReLU(d, width, torch.Generator().manual_seed(seed + 1), bias=True, dtype=torch.float64)
    return x, y, model


def test_centred_model_starts_at_zero_and_scales_the_gradient():
    x, _, model = _setup()
    h = CentredModel(model, alpha=7.0)
    assert torch.equal(h(x), torch.zeros(x.shape[0], 1, dtype=torch.float64))
    assert all(p.requires_grad for p in h.model.parameters())
    assert not any(p.requires_grad for p in h.initial.parameters())
    with torch.no_grad():  # move theta: h = alpha (f_theta - f_theta0) exactly
        model.a.add_(0.1)
    f0 = TwoLayerReLU(5, 256, torch.Generator().manual_seed(1), bias=True, dtype=torch.float64)(x)
    assert torch.allclose(h(x), 7.0 * (model(x) - f0), rtol=0, atol=1e-13)
    g_h = torch.autograd.grad(h(x).sum(), model.a)[0]
    g_f = torch.autograd.grad(model(x).sum(), model.a)[0]
    assert torch.allclose(g_h, 7.0 * g_f, rtol=1e-13, atol=0)


def test_gradient_descent_tends_to_the_linearized_trajectory_as_alpha_grows():
    x, y, base = _setup()
    k0 = ntk.empirical(base, x).reshape(x.shape[0], x.shape[0])
    lr = 0.5 * x.shape[0] / float(torch.linalg.eigvalsh(k0).max())  # stable: lr lambda_max / P = 0.5
    steps = 25
    lin = linearized_trajectory(k0, y, lr, steps)
    errors = []
    for alpha in (30.0, 300.0, 3000.0):
        model = TwoLayerReLU(5, 256, torch.Generator().manual_seed(1), bias=True, dtype=torch.float64)
        h = CentredModel(model, alpha)
        params = list(model.parameters())
        for _ in range(steps):
            grads = torch.autograd.grad(lazy_loss(h(x).squeeze(-1), y, alpha), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(lr * g)
        with torch.no_grad():
            errors.append(float((h(x).squeeze(-1) - lin).norm() / lin.norm()))
    # O(1/alpha): tenfold alpha, about tenfold closer (measured 1.2e-4, 1.2e-5, 1.2e-6)
    assert errors[2] < 1e-5, errors
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20, errors
    assert float((lin - y).norm()) < 0.9 * float(y.norm())  # the trajectory has moved towards y


def test_linearized_trajectory_closed_form_on_an_eigenbasis():
    # K = Q diag(l) Q^T: each eigencomponent of y relaxes as 1 - (1 - lr l / P)^t
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    lam = torch.tensor([4.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    k = q @ torch.diag(lam) @ q.T
    y = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    out = linearized_trajectory(k, y, lr=0.5, steps=7)
    coef = 1 - (1 - 0.5 * lam / 4) ** 7
    assert torch.allclose(out, q @ (coef * (q.T @ y)), rtol=0, atol=1e-13)
    assert torch.equal(linearized_trajectory(k, y, 0.5, 0), torch.zeros(4, dtype=torch.float64))


def test_target_weight_alignment_exact_cases():
    beta = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    aligned = torch.outer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), beta)
    assert target_weight_alignment(aligned, beta).item() == pytest.approx(1.0, rel=1e-14)
    orth = torch.tensor([[4.0, 1.0, -3.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    assert target_weight_alignment(orth, beta).item() == pytest.approx(0.0, abs=1e-15)
    # isotropic weights: 1/D on average (D = 10; mean over 200 matrices of 64 rows)
    w = torch.randn(200 * 64, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    b = torch.randn(10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    vals = torch.stack([target_weight_alignment(c, b) for c in w.split(64)])
    assert abs(float(vals.mean()) - 0.1) < 0.01


def test_bad_input_is_a_clear_error():
    _, _, model = _setup()
    with pytest.raises(ConfigError, match="alpha"):
        CentredModel(model, 0.0)
    with pytest.raises(ShapeError):
        lazy_loss(torch.zeros(3), torch.zeros(3, 1), 1.0)
    with pytest.raises(ShapeError):
        target_weight_alignment(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ConfigError):
        linearized_trajectory(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), -1.0, 3)
