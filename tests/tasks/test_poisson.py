"""poisson1d: the targets solve the finite-difference system (Thomas vs dense solve), approach the
analytic solution at O(h²) for a known forcing, splits are disjoint, parameters strict."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import build_task
from layerlab.tasks.poisson import thomas

F64 = torch.float64


def laplacian(n: int) -> torch.Tensor:
    return (2 * torch.eye(n, dtype=F64) - torch.diag(torch.ones(n - 1, dtype=F64), 1)
            - torch.diag(torch.ones(n - 1, dtype=F64), -1)) * (n + 1) ** 2


def test_thomas_matches_a_dense_solve() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 9
    lower, upper = torch.randn(n - 1, generator=gen, dtype=F64), torch.randn(n - 1, generator=gen, dtype=F64)
    diag = 4 + torch.rand(n, generator=gen, dtype=F64)  # diagonally dominant
    rhs = torch.randn(3, n, generator=gen, dtype=F64)
    M = torch.diag(diag) + torch.diag(lower, -1) + torch.diag(upper, 1)
    torch.testing.assert_close(thomas(lower, diag, upper, rhs), torch.linalg.solve(M, rhs.T).T, rtol=1e-12, atol=1e-12)


def test_targets_solve_the_discrete_problem() -> None:
    task = build_task("poisson1d", n=31, n_train=4, n_eval=16)
    b = task.eval_set("test")
    residual = b.targets @ laplacian(31).T - b.inputs
    assert residual.abs().max() <= 1e-9 * b.inputs.abs().max()
    assert torch.equal(task.oracle(b), b.targets)


def test_discrete_solution_approaches_the_analytic_one_at_second_order() -> None:
    errors = []
    for n in (31, 63):
        task = build_task("poisson1d", n=n, n_train=1, n_eval=1)
        x = task.sensors
        u = task.solve((math.pi ** 2 * torch.sin(math.pi * x))[None])[0]
        h = 1 / (n + 1)
        # exact: u_i = sin(πx_i) (πh/2)² / sin²(πh/2), so max|u - sin(πx)| ≈ (πh)²/12
        predicted = (math.pi * h / 2) ** 2 / math.sin(math.pi * h / 2) ** 2 - 1
        err = (u - torch.sin(math.pi * x)).abs().max().item()
        assert err == pytest.approx(predicted * torch.sin(math.pi * x).max().item(), rel=1e-6)
        errors.append(err)
    assert 3.8 < errors[0] / errors[1] < 4.2  # O(h²)


def test_splits_and_parameters() -> None:
    task = build_task("poisson1d", n=15, n_train=50, n_eval=40)
    rows = lambda b: {tuple(r.tolist()) for r in b.inputs}  # noqa: E731
    train = task.train_batch(0, torch.Generator())
    val, test = task.eval_set("val"), task.eval_set("test")
    assert len(train) == 50 and not rows(train) & rows(val) and not rows(val) & rows(test) and not rows(train) & rows(test)
    assert task.input_dim == task.n_outputs == 15 and task.metric == "rel_l2" and task.chance == 1.0
    with pytest.raises(ConfigError, match="n \\(interior grid points\\)"):
        build_task("poisson1d", n=0)
    with pytest.raises(ConfigError, match="length_scale"):
        build_task("poisson1d", length_scale=-1.0)
