"""The deep-linear sigmoid measurement (Saxe et al. 2013, arXiv:1312.6120)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.saxe import gd_step, input_correlations
from layerlab.errors import ConfigError
from layerlab.tasks.teacher import LinearTeacher

SMALL = dict(in_features=4, out_features=4, width=6, singular_values=[2.0, 1.0], n_train=16, every=10)


def test_gd_step_is_gradient_descent_on_the_task_loss():
    task = LinearTeacher(in_features=5, out_features=3, singular_values=(2.0, 1.0), n_train=20, noise=0.1)
    batch = task.train_batch(0, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    w1 = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    loss = task.loss(batch.inputs @ (w2 @ w1).T, batch)
    g1, g2 = torch.autograd.grad(loss, (w1, w2))
    sxx, syx = input_correlations(batch.inputs, batch.targets)
    n1, n2 = gd_step(w1.detach(), w2.detach(), sxx, syx, 0.1)
    torch.testing.assert_close(n1, w1.detach() - 0.1 * g1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(n2, w2.detach() - 0.1 * g2, rtol=1e-12, atol=1e-12)


def test_small_steps_follow_the_closed_form_and_large_steps_drift():
    m = get_measure("deep_linear_sigmoid")
    fine = m(0, lr=2e-3, steps=5000, **SMALL)
    coarse = m(0, lr=5e-2, steps=200, **SMALL)  # the same flow time, 25x coarser Euler steps
    assert fine["final_fraction_learned"] > 0.95  # every mode has risen
    assert fine["error"] < 0.01
    assert coarse["error"] > 3 * fine["error"]  # the gap is discretization, shrinking with lr


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="width"):
        get_measure("deep_linear_sigmoid")(0, width=1, steps=1, **{k: v for k, v in SMALL.items() if k != "width"})
    with pytest.raises(ConfigError, match="lr > 0"):
        get_measure("deep_linear_sigmoid")(0, lr=0.0, **SMALL)
