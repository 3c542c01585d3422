"""Fu et al. 2023 (arXiv:2310.17086): Iterative Newton, GD, their closed-form errors, and Newton by linear attention."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import iterative_newton as it

TOL = 1e-10


def prompts(n=12, d=4, batch=3, spectrum=(1.0, 0.5, 0.1, 0.02), seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor(spectrum, dtype=torch.float64).sqrt()
    x = torch.randn(batch, n, d, generator=g, dtype=torch.float64) * scale
    w = torch.randn(batch, d, generator=g, dtype=torch.float64)
    return x, (x @ w[..., None])[..., 0], torch.randn(batch, d, generator=g, dtype=torch.float64)


def test_newton_residual_squares_each_step_and_reaches_the_inverse():
    x, _, _ = prompts()
    s = x.transpose(1, 2) @ x
    ms = it.newton_iterates(x, 30)
    eye = torch.eye(4, dtype=torch.float64)
    r0 = eye - ms[0] @ s
    for k in range(5):
        assert float((eye - ms[k] @ s - torch.linalg.matrix_power(r0, 2 ** k)).abs().max()) < TOL
    assert float((ms[-1] - torch.linalg.inv(s)).abs().max() / torch.linalg.inv(s).abs().max()) < TOL
    # alpha = 2/||S S^T||_F: |1 - alpha lambda^2| < 1 for every eigenvalue
    lam = torch.linalg.eigvalsh(s)
    assert float((1 - it.newton_alpha(s)[:, None] * lam ** 2).abs().max()) < 1


def test_iterates_match_their_closed_form_errors():
    x, y, _ = prompts(seed=1)
    w_ols = it.ols(x, y)
    xty = (x.transpose(1, 2) @ y[..., None])[..., 0]
    for k, m in enumerate(it.newton_iterates(x, 8)):
        diff = (m @ xty[..., None])[..., 0] - w_ols
        assert float((diff - it.newton_error_closed_form(x, y, k)).norm(dim=-1).max() / w_ols.norm(dim=-1).min()) < TOL
    lam = torch.linalg.eigvalsh(x.transpose(1, 2) @ x)
    eta = 2 / (lam[:, -1] + lam[:, 0])
    ws = it.gd_iterates(x, y, 60, eta)
    for k in (0, 1, 7, 60):
        assert float((ws[k] - w_ols - it.gd_error_closed_form(x, y, k, eta)).norm(dim=-1).max()
                     / w_ols.norm(dim=-1).min()) < TOL
    # and the closed forms are not trivially zero: GD is still far from w_OLS after 7 steps
    assert float(it.gd_error_closed_form(x, y, 7, eta).norm(dim=-1).min() / w_ols.norm(dim=-1).max()) > 1e-3


def test_the_spectral_norm_alpha_leaves_the_top_direction_unconverged():
    x, _, _ = prompts(seed=2)
    s = x.transpose(1, 2) @ x
    lam, u = torch.linalg.eigh(s)
    top = u[..., -1:]  # eigenvector of lambda_max
    m = it.newton_iterates(x, 20, it.newton_alpha(s, norm="2"))[-1]
    assert float((m @ s @ top).abs().max()) < 1e-8  # (1 - alpha lambda_max^2)^(2^k) = 1: M_k S u_max = 0
    m = it.newton_iterates(x, 20)[-1]
    assert float((m @ s @ top - top).abs().max()) < 1e-8


def test_steps_to_tolerance_follow_log_log_for_newton_and_log_for_gd():
    eps = 1e-6
    assert float(it.steps_to_tolerance(1 - 1e-4, eps, newton=True)) == math.ceil(math.log2(math.log(eps) / math.log(1 - 1e-4)))
    assert float(it.steps_to_tolerance(0.9, eps, newton=False)) == math.ceil(math.log(eps) / math.log(0.9))
    # a hundredfold worse conditioning (rho = 1 - 1/kappa^2 for Newton) costs Newton ~log2(1e4) ~ 13 steps more
    extra = float(it.steps_to_tolerance(1 - 1e-6, eps, newton=True) - it.steps_to_tolerance(1 - 1e-2, eps, newton=True))
    assert 12 <= extra <= 14
    with pytest.raises(ConfigError, match="convergent"):
        it.steps_to_tolerance(1.0, eps, newton=True)


def test_linear_attention_stack_runs_newton_exactly():
    x, y, xq = prompts(seed=3)
    ms = it.newton_iterates(x, 6)
    ts, outs = it.newton_attention_stack(x, y, xq, 6)
    assert len(outs) == 7
    xty = (x.transpose(1, 2) @ y[..., None])
    for k, m in enumerate(ms):
        assert float((ts[k] - x @ m.transpose(1, 2)).abs().max()) < TOL * float((x @ m).abs().max())
        pred = (xq[:, None, :] @ m @ xty)[:, 0, 0]
        assert float((outs[k] - pred).abs().max() / pred.abs().max()) < TOL
    # after enough layers the stack predicts like least squares
    ts, outs = it.newton_attention_stack(x, y, xq, 30)
    ols_pred = (xq[:, None, :] @ it.ols(x, y)[..., None])[:, 0, 0]
    assert float((outs[-1] - ols_pred).abs().max() / ols_pred.abs().max()) < 1e-8


def test_bad_shapes_are_clear_errors():
    x, y, xq = prompts()
    with pytest.raises(ShapeError, match="x_query"):
        it.newton_attention_stack(x, y, xq[:, :3], 2)
    with pytest.raises(ConfigError, match="steps"):
        it.newton_iterates(x, -1)
