"""The dynamical-stability measurement (Wu & Su 2023, arXiv:2305.17490)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.sgd_stability import curvature, half_mse, train
from layerlab.errors import ConfigError


def _linear_problem(n: int = 12, d: int = 5) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).to(torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    return model, (x, y), x.T @ x / n  # the Hessian of (1/2n)||Xw - y||^2 is X^T X / n


def test_curvature_matches_the_exact_hessian_of_least_squares():
    model, data, h = _linear_problem()
    eig = torch.linalg.eigvalsh(h)
    g = torch.Generator().manual_seed(0)
    assert curvature(model, data, "gd", g) == pytest.approx(float(eig[-1]), rel=1e-8)
    assert curvature(model, data, "sgd", g) == pytest.approx(float(torch.trace(h)), rel=1e-8)


def test_gd_on_a_quadratic_converges_below_two_over_eta_and_diverges_above():
    model, data, h = _linear_problem()
    lam = float(torch.linalg.eigvalsh(h)[-1])
    w0 = model.weight.detach().clone()
    # least squares with n > d has a nonzero minimum loss: stop when the excess over it is tiny
    x, y = data
    w_star = torch.linalg.lstsq(x, y).solution
    floor = float(half_mse(lambda z: z @ w_star, data))
    _, stable = train(model, data, "gd", 1.9 / lam, 5000, floor + 1e-12, torch.Generator())
    assert stable < floor + 1e-12
    with torch.no_grad():
        model.weight.copy_(w0)
    _, unstable = train(model, data, "gd", 2.1 / lam, 2000, floor + 1e-12, torch.Generator())
    assert not (unstable < floor + 1e-12)  # the top mode grows by |1 - 2.1| per step
    assert not math.isfinite(unstable) or unstable > 1.0


def test_measure_sets_the_step_from_the_start_and_leaves_unconverged_runs_undecided():
    m = get_measure("dynamical_stability")
    out = m(0, optimizer="sgd", width=16, lr_factor=1.25, max_steps=3)
    assert out["excess_init"] == pytest.approx(0.25, abs=1e-12)  # eta = 1.25 * 2 / tr H(theta_0)
    assert out["converged"] == 0.0 and math.isnan(out["excess"])
    done = m(0, optimizer="gd", width=64, lr_factor=0.5, loss_tol=1e-4)
    assert done["converged"] == 1.0 and done["final_loss"] < 1e-4
    assert done["excess"] == pytest.approx(done["lr"] * done["sharpness_final"] / 2 - 1, rel=1e-12)
    assert done["sharpness_final"] <= done["trace_final"] + 1e-9


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        get_measure("dynamical_stability")(0, optimizer="adam")
    with pytest.raises(ConfigError, match="lr_factor"):
        get_measure("dynamical_stability")(0, lr_factor=0.0)
