"""The edge-of-stability measurement (Cohen et al. 2021, arXiv:2103.00065)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.edge_of_stability import SharpnessTracker, digits_subset, square_loss, tanh_mlp
from layerlab.errors import ConfigError


def _dense_hessian(model, data) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(t: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            parts[n] = t[i:i + k].reshape(s)
            i += k
        return 0.5 * (functional_call(model, parts, (data[0],)) - data[1]).square().sum(-1).mean()

    return torch.autograd.functional.hessian(loss, theta, vectorize=True)


def test_sharpness_tracker_equals_the_top_eigenvalue_of_the_dense_hessian():
    data = digits_subset(20)
    assert data[0].shape == (20, 64) and torch.equal(data[1].sum(1), torch.ones(20, dtype=torch.float64))
    assert torch.allclose(data[0].mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    model = tanh_mlp(64, 3, seed=0)
    top = float(torch.linalg.eigvalsh(_dense_hessian(model, data))[-1])
    track = SharpnessTracker(model, data, seed=0, tol=1e-10)
    assert track() == pytest.approx(top, rel=1e-8)
    assert track() == pytest.approx(top, rel=1e-8) and track.products > 0  # warm start, same Hessian
    assert float(square_loss(model, data)) > 0


def test_measurement_sets_the_step_from_the_initial_sharpness_and_reports_the_ratio():
    m = get_measure("edge_of_stability")
    out = m(0, n_train=20, width=3, start_ratio=0.5, steps=20, every=10)
    assert out["initial_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert out["lr"] == pytest.approx(2 * 0.5 / out["sharpness_init"], rel=1e-12)
    assert out["edge_error"] == pytest.approx(abs(out["tail_median"] - 1))
    assert 0 <= out["loss_rise_fraction"] <= 1
    # small steps (start_ratio 0.05) on 20 steps do not reach the edge: the error is large
    low = m(0, n_train=20, width=3, start_ratio=0.05, steps=20, every=10)
    assert low["edge_error"] > 0.5 and math.isnan(low["reach_step"])


def test_bad_options_are_a_clear_error():
    m = get_measure("edge_of_stability")
    with pytest.raises(ConfigError, match="start_ratio"):
        m(0, start_ratio=1.5)
    with pytest.raises(ConfigError, match="n_train"):
        m(0, n_train=5)
