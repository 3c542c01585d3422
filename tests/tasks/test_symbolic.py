"""The symbolic-regression task: the paper's formulas, fixed disjoint splits, its metrics."""
import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.tasks import build_task
from layerlab.tasks.symbolic import FORMULAS


def test_targets_are_the_formula_on_inputs_in_the_unit_cube():
    t = build_task("symbolic", formula="exp_sin", n_train=64, n_eval=32)
    x, y = t.train_batch(0, torch.Generator()).inputs, t.train_batch(0, torch.Generator()).targets
    assert x.shape == (64, 2) and y.shape == (64, 1) and x.abs().max() <= 1
    x0, x1 = 0.25, -0.5
    assert math.isclose(t.function(torch.tensor([[x0, x1]], dtype=torch.float64)).item(),
                        math.exp(math.sin(math.pi * x0) + x1 ** 2), rel_tol=1e-14)
    assert torch.equal(y, t.oracle(t.train_batch(0, torch.Generator())))
    rings = build_task("symbolic", formula="exp_rings", n_train=8, n_eval=8)
    z = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)  # sin(pi/2) = 1, sin(0) = 0
    assert math.isclose(rings.function(z).item(), math.exp(0.5), rel_tol=1e-14)
    assert build_task("symbolic", formula="bessel", n_train=4, n_eval=4).function(
        torch.zeros(1, 1, dtype=torch.float64)).item() == 1.0  # J0(0) = 1
    assert {n: FORMULAS[n][0] for n in FORMULAS} == {"bessel": 1, "exp_sin": 2, "product": 2,
                                                    "exp_mean_sin": 100, "exp_rings": 4}


def test_splits_are_fixed_distinct_and_noise_only_on_training():
    a = build_task("symbolic", n_train=50, n_eval=40, noise=0.1)
    b = build_task("symbolic", n_train=50, n_eval=40, noise=0.1)
    val, test = a.eval_set("val"), a.eval_set("test")
    assert torch.equal(val.inputs, b.eval_set("val").inputs) and not torch.equal(val.inputs, test.inputs)
    assert torch.equal(test.targets, a.oracle(test))  # evaluation targets are exact
    train = a.train_batch(0, torch.Generator())
    assert (train.targets - a.oracle(train)).abs().max() > 0.01


def test_rmse_is_the_root_of_the_mean_squared_error_and_chance_predicts_the_mean():
    t = build_task("symbolic", n_train=16, n_eval=100)
    test = t.eval_set("test")
    zero = torch.nn.Linear(2, 1).double()
    torch.nn.init.zeros_(zero.weight)
    torch.nn.init.constant_(zero.bias, test.targets.mean().item())
    m = t.evaluate(zero, "test")
    assert math.isclose(m["rmse"], t.chance, rel_tol=1e-9) and math.isclose(m["mse"], m["rmse"] ** 2, rel_tol=1e-12)
    assert t.metric == "rmse" and not t.higher_is_better
    with pytest.raises(ShapeError, match="needs 1 output"):
        t.loss(torch.zeros(4, 2), t.train_batch(4, torch.Generator()))


def test_bad_parameters_name_the_problem():
    with pytest.raises(ConfigError, match="unknown formula 'exp_sn'; did you mean 'exp_sin'"):
        build_task("symbolic", formula="exp_sn")
    with pytest.raises(ConfigError, match="noise must be"):
        build_task("symbolic", noise=-1.0)
