"""Projection head theory (arXiv:2403.11391): the spectral contrastive loss, its minimiser and the balanced layers."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import projection_head as ph
from layerlab.lens.theory.feature_contamination import orthonormal_rows

S = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
SIGMA = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)


def test_batch_loss_is_an_unbiased_estimate_of_the_population_loss():
    g = torch.Generator().manual_seed(0)
    basis = orthonormal_rows(3, 5, g)
    m, s2 = ph.second_moments(S, SIGMA, basis)
    w = 0.4 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    vals = []
    for _ in range(60):
        xa, xb, _ = ph.augmented_pairs(200, S, SIGMA, basis, g)
        vals.append(float(ph.empirical_loss(xa @ w.T, xb @ w.T)))
    v = torch.tensor(vals)
    assert abs(float(v.mean()) - float(ph.population_loss(w, m, s2))) < 4 * float(v.std()) / math.sqrt(len(vals))


def test_closed_form_minimiser_is_stationary_with_the_predicted_weights_and_loss():
    basis = orthonormal_rows(3, 5, torch.Generator().manual_seed(1))
    m, s2 = ph.second_moments(S, SIGMA, basis)
    w = (torch.diag(1 / (S * (1 + SIGMA**2))) @ basis).requires_grad_(True)
    loss = ph.population_loss(w, m, s2)
    (grad,) = torch.autograd.grad(loss, [w])
    assert float(grad.abs().max()) < 1e-13
    assert float(loss.detach()) == pytest.approx(-float((1 / (1 + SIGMA**2) ** 2).sum()), rel=1e-13)
    _, post = ph.optimal_weights(S, SIGMA)
    assert torch.allclose(ph.layer_feature_weights(w.detach(), S, basis), post, rtol=1e-13)


def test_two_layer_gradient_descent_from_small_weights_reaches_the_balanced_weighting():
    # post-head weights 1 / (1 + sigma^2); pre-head weights the geometric mean (s * post)^{1/2}
    s = torch.tensor([1.0, 1.5, 0.7], dtype=torch.float64)  # unequal strengths: the pre-head layer keeps sqrt(s)
    g = torch.Generator().manual_seed(2)
    basis = orthonormal_rows(3, 6, g)
    m, s2 = ph.second_moments(s, SIGMA, basis)
    w1, w2 = ph.train_two_layer(0.03 * torch.randn(4, 6, generator=g, dtype=torch.float64),
                                0.03 * torch.randn(4, 4, generator=g, dtype=torch.float64), m, s2, steps=4000, lr=0.02)
    pre_opt, post_opt = ph.optimal_weights(s, SIGMA)
    assert torch.allclose(ph.layer_feature_weights(w2 @ w1, s, basis), post_opt, rtol=1e-8)
    # the residual is the initial imbalance of the layers (~ init^2), not a step-size effect
    assert torch.allclose(ph.layer_feature_weights(w1, s, basis), pre_opt, rtol=2e-3)
    assert not torch.allclose(ph.layer_feature_weights(w1, s, basis), post_opt, rtol=0.05)


def test_bad_input():
    with pytest.raises(ConfigError, match="strengths"):
        ph.optimal_weights(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]))
    with pytest.raises(ShapeError, match="n >= 2"):
        ph.empirical_loss(torch.zeros(1, 3), torch.zeros(1, 3))
