"""antiderivative: the targets are the exact antiderivative (checked by quadrature and by
differentiation), the inputs follow the RBF field's covariance, the splits are disjoint, the
metric is the relative L2 error, the parameters are strict."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task
from layerlab.tasks.antiderivative import cumulative_trapezoid

F64 = torch.float64


def test_target_is_the_exact_antiderivative() -> None:
    task = build_task("antiderivative", m=11, n_train=4, n_eval=8)
    coeffs = task.functions(6, torch.Generator().manual_seed(0))
    fine = torch.linspace(0, 1, 20001, dtype=F64)
    # quadrature on a fine grid: trapezoid error <= h^2/12 max|u''| ~ 1e-9 here
    quad = cumulative_trapezoid(task.u(coeffs, fine), 1.0 / 20000)
    exact = task.antiderivative(coeffs, fine)
    assert (quad - exact).abs().max() < 1e-8
    assert exact[:, 0].abs().max() == 0  # s(0) = 0
    # ds/dx = u: central differences, O(h^2)
    x = torch.tensor([0.1, 0.37, 0.5, 0.93], dtype=F64)
    eps = 1e-5
    ds = (task.antiderivative(coeffs, x + eps) - task.antiderivative(coeffs, x - eps)) / (2 * eps)
    torch.testing.assert_close(ds, task.u(coeffs, x), rtol=0, atol=1e-8)
    # and the sinc form agrees with the textbook (sin(ωx + φ) - sin φ) / ω
    w, omega, phi = coeffs
    direct = math.sqrt(2 / task.features) * (w[..., None] * (torch.sin(omega[..., None] * x + phi[..., None])
                                                            - torch.sin(phi)[..., None]) / omega[..., None]).sum(1)
    torch.testing.assert_close(task.antiderivative(coeffs, x), direct, rtol=1e-10, atol=1e-12)


def test_batches_hold_the_functions_at_the_sensors() -> None:
    task = build_task("antiderivative", m=9, n_train=16, n_eval=8)
    b = task.eval_set("val")
    assert b.inputs.shape == b.targets.shape == (8, 9) and b.mask is None
    assert torch.equal(task.queries[:, 0], task.sensors) and task.sensors[0] == 0 and task.sensors[-1] == 1


def test_inputs_have_the_rbf_covariance() -> None:
    task = build_task("antiderivative", m=5, length_scale=0.3, features=400, n_train=4, n_eval=4)
    coeffs = task.functions(4000, torch.Generator().manual_seed(1))
    x = torch.tensor([0.0, 0.15, 0.6], dtype=F64)
    u = task.u(coeffs, x)
    cov = u.T @ u / len(u)
    expected = torch.exp(-(x[:, None] - x[None]) ** 2 / (2 * 0.3 ** 2))
    assert (cov - expected).abs().max() < 0.08  # Monte Carlo over 4000 functions


def test_splits_are_disjoint_and_fixed() -> None:
    task = build_task("antiderivative", m=8, n_train=200, n_eval=100)
    train = task.train_batch(0, torch.Generator())
    val, test = task.eval_set("val"), task.eval_set("test")
    rows = lambda b: {tuple(r.tolist()) for r in b.inputs}  # noqa: E731
    assert len(rows(train)) == 200 and not rows(train) & rows(val) and not rows(val) & rows(test)
    assert not rows(train) & rows(test)
    again = build_task("antiderivative", m=8, n_train=200, n_eval=100)
    assert torch.equal(again.eval_set("test").inputs, test.inputs)
    assert torch.equal(again.train_batch(-1, torch.Generator()).targets, train.targets)
    sub = task.train_batch(5, torch.Generator().manual_seed(0))
    assert len(sub) == 5 and rows(sub) <= rows(train)


def test_loss_and_relative_l2_metric() -> None:
    task = build_task("antiderivative", m=6, n_train=4, n_eval=10)
    b = task.eval_set("test")
    zero, double = torch.zeros_like(b.targets), 2 * b.targets

    def metrics(pred):
        sums = task._sums(pred, b)
        return task.summarize(sums)

    assert metrics(zero)["rel_l2"] == pytest.approx(1.0, abs=1e-12) == task.chance
    assert metrics(double)["rel_l2"] == pytest.approx(1.0, abs=1e-12)
    assert metrics(b.targets)["rel_l2"] == 0.0
    half = 0.5 * b.targets
    assert metrics(half)["rel_l2"] == pytest.approx(0.5, abs=1e-12)
    assert metrics(zero)["mse"] == pytest.approx(b.targets.square().mean().item(), rel=1e-12)
    assert task.loss(zero, b).item() == pytest.approx(b.targets.square().mean().item(), rel=1e-12)
    # the evaluation is independent of the chunk size
    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, u):
            return 0.5 * task.oracle(Batch(u, u)).to(u.dtype) + 0 * self.anchor

    a, c = task.evaluate(Zero(), "test", batch_size=3), task.evaluate(Zero(), "test", batch_size=10)
    assert a["rel_l2"] == pytest.approx(c["rel_l2"], rel=1e-12) and 0.4 < a["rel_l2"] < 0.6


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="m must be >= 2"):
        build_task("antiderivative", m=1)
    with pytest.raises(ConfigError, match="length_scale"):
        build_task("antiderivative", length_scale=0.0)
    with pytest.raises(ConfigError, match="n_train"):
        build_task("antiderivative", n_train=0)
