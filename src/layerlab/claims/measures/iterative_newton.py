r"""Iterative Newton against gradient descent on in-context linear regression, and a linear-attention
stack that runs Newton's iterations.

Paper: Fu, Chen, Jia & Sharan, "Transformers Learn Higher-Order Optimization Methods for In-Context
Learning: A Study with Linear Models", 2023, arXiv:2310.17086: Iterative Newton
(``M_0 = alpha S``, ``M_{k+1} = 2 M_k - M_k S M_k``, ``w_hat_k = M_k X^T y``) converges
quadratically, gradient descent linearly, and Transformers can implement ``k`` Newton iterations
with ``O(k)`` layers (``lens.theory.iterative_newton``).

Per seed: ``prompts`` test prompts of the ``in_context_regression`` task (``dim`` features,
``context`` examples, covariance ``diag(spectrum)``, noiseless, ``data_seed = seed``); ``S = X^T X``
per prompt, ``alpha = 2/||S S^T||_F``, GD step ``eta = 2/(lambda_max + lambda_min)`` (GD's best).

- ``newton_closed_form_error``: ``max_k ||(w_hat_k - w_OLS) + (I - alpha S^2)^{2^k} w_OLS|| / ||w_OLS||``
  over ``k = 0..newton_steps`` and prompts (the iterates against the closed form);
- ``gd_closed_form_error``: the same for GD against ``-(I - eta S)^k w_OLS``, ``k`` every
  ``gd_stride`` steps up to ``gd_steps``;
- ``construction_error``: the ``k + 2``-layer linear-attention stack's readout after each Newton
  layer against ``x_q^T M_k X^T y``: ``max |diff| / max |y_hat|`` over ``k`` and prompts.

``error`` is the largest of the three. Beside it: the steps each method takes to a relative error
``eps`` of ``w`` (median over prompts: ``newton_steps_to_eps``, ``gd_steps_to_eps``), the steps
predicted from the worst error factor (``rho^{2^k}`` and ``rho^k``: upper bounds;
``bound_violations`` counts prompts that needed more), the condition number of ``S``, and
``spectral_alpha_error``: Newton's relative error after ``newton_steps`` steps with
``alpha = 2/||S S^T||_2`` (the top eigendirection never converges: ~ its share of ``w_OLS``).
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory import iterative_newton as it
from ...registry import Paper
from ...tasks.in_context_regression import InContextRegression
from . import register_measure


def _first_below(errors: torch.Tensor, eps: float) -> torch.Tensor:
    """Index of the first step (axis 0) where ``errors <= eps`` (len if never), per prompt."""
    below = errors <= eps
    first = torch.where(below.any(0), below.float().argmax(0), torch.full_like(below[0], errors.shape[0], dtype=torch.long))
    return first.double()


@register_measure("newton_vs_gd", metric="error",
                  paper=Paper("Transformers Learn Higher-Order Optimization Methods for In-Context Learning: "
                              "A Study with Linear Models", 2023, "2310.17086"))
def newton_vs_gd(seed: int, *, dim: int = 5, context: int = 20, spectrum: tuple[float, ...] | list[float] = (),
                 prompts: int = 64, newton_steps: int = 24, gd_steps: int = 3000, gd_stride: int = 100,
                 eps: float = 1e-6) -> dict[str, float]:
    if context < dim or prompts < 1 or newton_steps < 1 or gd_steps < 1 or gd_stride < 1 or not 0 < eps < 1:
        raise ConfigError(f"newton_vs_gd: need context >= dim (S invertible), prompts, steps, stride >= 1 and 0 < eps < 1; "
                          f"got dim={dim}, context={context}, prompts={prompts}, newton_steps={newton_steps}, "
                          f"gd_steps={gd_steps}, gd_stride={gd_stride}, eps={eps}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 5 x 5 matrices: one thread is faster on a shared machine; restored below
    try:
        return _measure(seed, dim, context, tuple(spectrum), prompts, newton_steps, gd_steps, gd_stride, eps)
    finally:
        torch.set_num_threads(threads)


def _measure(seed: int, dim: int, context: int, spectrum: tuple[float, ...], prompts: int, newton_steps: int,
             gd_steps: int, gd_stride: int, eps: float) -> dict[str, float]:
    task = InContextRegression(dim=dim, context=context, spectrum=spectrum, n_eval=prompts, data_seed=seed)
    tokens = task.tokens(task.eval_set("test"))
    x, y, xq = tokens[:, :-1, :-1], tokens[:, :-1, -1], tokens[:, -1, :-1]
    s = x.transpose(1, 2) @ x
    lam = torch.linalg.eigvalsh(s)
    w_ols = it.ols(x, y)
    norm = w_ols.norm(dim=-1)
    xty = (x.transpose(1, 2) @ y[..., None])[..., 0]

    ms = it.newton_iterates(x, newton_steps)
    newton_err = torch.stack([((m @ xty[..., None])[..., 0] - w_ols).norm(dim=-1) / norm for m in ms])  # (K+1, P)
    newton_cf = max(float((((m @ xty[..., None])[..., 0] - w_ols - it.newton_error_closed_form(x, y, k)).norm(dim=-1)
                           / norm).max()) for k, m in enumerate(ms))

    eta = 2.0 / (lam[:, -1] + lam[:, 0])
    ws = it.gd_iterates(x, y, gd_steps, eta)
    gd_err = torch.stack([(w - w_ols).norm(dim=-1) / norm for w in ws])
    gd_cf = max(float(((ws[k] - w_ols - it.gd_error_closed_form(x, y, k, eta)).norm(dim=-1) / norm).max())
                for k in range(0, gd_steps + 1, gd_stride))

    _, outs = it.newton_attention_stack(x, y, xq, newton_steps)
    preds = torch.stack([(xq[:, None, :] @ m @ xty[..., None])[:, 0, 0] for m in ms])
    construction = float((torch.stack(outs) - preds).abs().max() / preds.abs().max())

    alpha = it.newton_alpha(s)
    rho_newton = (1 - alpha[:, None] * lam ** 2).abs().max(-1).values
    rho_gd = (1 - eta[:, None] * lam).abs().max(-1).values
    newton_obs, gd_obs = _first_below(newton_err, eps), _first_below(gd_err, eps)
    newton_pred = it.steps_to_tolerance(rho_newton, eps, newton=True)
    gd_pred = it.steps_to_tolerance(rho_gd, eps, newton=False)
    spectral = it.newton_iterates(x, newton_steps, it.newton_alpha(s, norm="2"))[-1]
    spectral_err = ((spectral @ xty[..., None])[..., 0] - w_ols).norm(dim=-1) / norm
    return {"error": max(newton_cf, gd_cf, construction), "newton_closed_form_error": newton_cf,
            "gd_closed_form_error": gd_cf, "construction_error": construction,
            "newton_steps_to_eps": float(newton_obs.median()), "gd_steps_to_eps": float(gd_obs.median()),
            "newton_steps_bound": float(newton_pred.median()), "gd_steps_bound": float(gd_pred.median()),
            "bound_violations": float(((newton_obs > newton_pred) | (gd_obs > gd_pred)).sum()),
            "newton_unconverged": float((newton_obs > newton_steps).sum()), "gd_unconverged": float((gd_obs > gd_steps).sum()),
            "condition_number": float((lam[:, -1] / lam[:, 0]).median()),
            "spectral_alpha_error": float(spectral_err.median())}
