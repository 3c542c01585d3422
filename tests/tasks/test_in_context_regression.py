"""The in-context regression task (Zhang, Frei & Bartlett 2023, arXiv:2306.09927, Sec. 3.1)."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.tasks import build_task


def test_prompts_are_linear_tasks_with_a_blank_query():
    task = build_task("in_context_regression", dim=3, context=7, spectrum=[4.0, 1.0, 0.25], n_eval=64)
    batch = task.train_batch(5000, torch.Generator().manual_seed(0))
    assert batch.inputs.shape == (5000, task.input_dim) and batch.targets.shape == (5000, 1)
    t = task.tokens(batch)
    x, y, xq = t[:, :-1, :-1], t[:, :-1, -1], t[:, -1, :-1]
    assert torch.all(t[:, -1, -1] == 0)  # the query's label slot is 0
    # labels are <w, x_i> with one w per prompt: the noiseless oracle recovers the query's label exactly (N >= d)
    assert torch.allclose(task.oracle(batch), batch.targets, atol=1e-8)
    # covariates ~ N(0, Lambda): per-coordinate variances
    var = torch.cat([x.reshape(-1, 3), xq]).var(0)
    assert torch.allclose(var, torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64), rtol=0.03)
    # predicting 0 costs tr(Lambda)/2 (chance), within sampling error
    zero = task.loss(torch.zeros_like(batch.targets), batch).item()
    assert zero == pytest.approx(task.chance, rel=0.06) and task.chance == pytest.approx(2.625)
    assert y.shape == (5000, 7)


def test_splits_are_fixed_and_distinct():
    task = build_task("in_context_regression", dim=2, context=3, n_eval=32)
    val, test = task.eval_set("val"), task.eval_set("test")
    again = build_task("in_context_regression", dim=2, context=3, n_eval=32)
    assert torch.equal(val.inputs, again.eval_set("val").inputs)
    assert not torch.equal(val.inputs, test.inputs)


def test_noisy_oracle_is_the_ridge_posterior_mean():
    task = build_task("in_context_regression", dim=4, context=3, noise=0.5, n_eval=8)
    batch = task.train_batch(4, torch.Generator().manual_seed(1))
    t = task.tokens(batch)
    x, y, xq = t[0, :-1, :-1], t[0, :-1, -1], t[0, -1, :-1]
    w = torch.linalg.solve(x.T @ x + 0.25 * torch.eye(4, dtype=torch.float64), x.T @ y)
    assert task.oracle(batch)[0, 0].item() == pytest.approx(float(xq @ w), rel=1e-10)


def test_bad_parameters_and_shapes_are_explained():
    with pytest.raises(ConfigError, match="spectrum has 2 values for dim = 3"):
        build_task("in_context_regression", dim=3, spectrum=[1.0, 2.0])
    with pytest.raises(ConfigError, match="noise"):
        build_task("in_context_regression", noise=float("nan"))
    task = build_task("in_context_regression", dim=2, context=2, n_eval=4)
    batch = task.train_batch(3, torch.Generator())
    with pytest.raises(ShapeError, match="1 output per prompt"):
        task.loss(torch.zeros(3), batch)
