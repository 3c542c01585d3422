r"""Dynamical stability of the minima that GD and SGD converge to.

Paper: Wu & Su, "The Implicit Regularization of Dynamical Stability in Stochastic Gradient
Descent", 2023, arXiv:2305.17490 (abstract; Sec. 3). Near a global minimum ``theta*`` of an
over-parameterized square loss the linearized iteration is ``v <- (I - eta H_batch) v``. For
gradient descent (full batch) it is stable iff

    lambda_max(H(theta*)) <= 2 / eta,

and for SGD the paper shows that linear stability forces a bound on the *trace*:

    tr H(theta*) <= 2 / eta   (one example per step),

a much stronger constraint, since ``tr H >= lambda_max``. (For one example per step and a
rank-one per-example Hessian ``g_i g_i^T`` with equal ``||g_i||^2 = tr H`` the mean-square
iteration gives ``E||v'||^2 = ||v||^2 - eta v^T H v (2 - eta tr H)``, which is the bound.)

The measurement fits ``n_train`` inputs on the unit sphere in ``in_features`` dimensions (targets
``sqrt(d) x_0 + d x_1 x_2``) with ``lens.theory.TwoLayerReLU`` (``f(x) = (1/sqrt(m)) sum_j a_j
relu(w_j^T x + b_j)``, the NTK parameterization, width ``m``) in float64, on
``L = (1/2n) sum_i (f(x_i) - y_i)^2``, either by full-batch gradient descent (``optimizer =
"gd"``) or by SGD on one uniformly drawn example per step (``"sgd"``). The step is set *above*
the bound at the initialization, ``eta = lr_factor * 2 / q(theta_0)`` with ``q = lambda_max`` for
GD and ``q = tr H`` for SGD, so the initial region is linearly unstable and training must move
to a flatter minimum to converge (``lr_factor > 1``; for GD this is the catapult phase of
Lewkowycz et al. 2020). Training runs until ``L < loss_tol`` (a minimum) or ``max_steps``. At
the end it measures ``lambda_max(H)`` (``lens.hessian.top_eigenvalues``, Lanczos) and ``tr H``
(``lens.hessian.trace``, Hutch++) of the full training loss and reports

    excess = eta * q(theta_T) / 2 - 1,

at most 0 when the bound holds. A run that has not reached ``L < loss_tol`` is not at a minimum:
its ``excess`` is NaN (so a card's interval cannot be computed: inconclusive), and ``converged``
says so. For SGD it also runs full-batch GD at the same step from the same start and reports that
minimum's ``gd_trace_excess = eta tr H / 2 - 1`` (the paper: GD's stability does not bound the
trace), NaN if that GD run does not converge.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import hessian, theory
from ...registry import Paper
from . import register_measure
from .ntk_width import sphere_regression

OPTIMIZERS = ("gd", "sgd")
Batch = tuple[torch.Tensor, torch.Tensor]


def half_mse(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``(1/2n) sum_i (f(x_i) - y_i)^2`` over a batch ``(x, y)``, ``y`` of shape ``(n, 1)``."""
    x, y = batch
    return 0.5 * (model(x) - y).square().mean()


def curvature(model: nn.Module, batch: Batch, which: str, generator: torch.Generator) -> float:
    """``lambda_max(H)`` (``which = "gd"``) or ``tr H`` (``"sgd"``) of ``half_mse`` on ``batch``."""
    if which == "gd":
        return float(hessian.top_eigenvalues(model, half_mse, [batch], k=1, generator=generator)[0])
    n_params = sum(p.numel() for p in model.parameters())
    est, _ = hessian.trace(model, half_mse, [batch], n_samples=min(3 * n_params, 150), generator=generator)
    return float(est)


def train(model: nn.Module, data: Batch, optimizer: str, lr: float, max_steps: int, loss_tol: float,
          generator: torch.Generator) -> tuple[int, float]:
    """GD (full batch) or SGD (one example drawn uniformly per step) at step ``lr`` until the full
    loss is below ``loss_tol`` (checked every step for GD, every ``n`` steps for SGD), diverges, or
    ``max_steps``; returns (steps, final full loss). Changes ``model`` in place."""
    x, y = data
    n = x.shape[0]
    params = list(model.parameters())
    steps = 0
    with torch.no_grad():
        loss = float(half_mse(model, data))
    while steps < max_steps and loss >= loss_tol and math.isfinite(loss):
        if optimizer == "gd":
            batch = data
        else:
            i = int(torch.randint(n, (1,), generator=generator))
            batch = (x[i:i + 1], y[i:i + 1])
        grads = torch.autograd.grad(half_mse(model, batch), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
            steps += 1
            if optimizer == "gd" or steps % n == 0 or steps == max_steps:
                loss = float(half_mse(model, data))
    return steps, loss


def _converged(loss: float, loss_tol: float) -> bool:
    return math.isfinite(loss) and loss < loss_tol


def stable_setup(name: str, seed: int, optimizer: str, n_train: int, in_features: int, width: int,
                 lr_factor: float, max_steps: int, loss_tol: float) -> tuple:
    """The start of a stability measurement: checked options, the data and 2-layer ReLU model drawn
    from ``seed``, a copy of its initial weights, the probe generator, the initial curvature
    ``q0`` (``curvature`` for ``optimizer``) and the step ``lr = lr_factor * 2 / q0``. Returns
    ``(gen, data, model, start, probe, q0, lr)``."""
    if n_train < 2 or in_features < 3 or width < 1 or max_steps < 1 or not lr_factor > 0 or not loss_tol > 0:
        raise ConfigError(f"{name}: need n_train >= 2, in_features >= 3, width >= 1, max_steps >= 1, "
                          f"lr_factor > 0, loss_tol > 0; got {n_train}, {in_features}, {width}, {max_steps}, "
                          f"{lr_factor}, {loss_tol}")
    gen = torch.Generator().manual_seed(seed)
    x, y = sphere_regression(n_train, in_features, gen)
    data = (x, y[:, None])
    model = theory.TwoLayerReLU(in_features, width, gen, bias=True, dtype=torch.float64)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    probe = torch.Generator().manual_seed(seed)
    q0 = curvature(model, data, optimizer, probe)
    return gen, data, model, start, probe, q0, lr_factor * 2.0 / q0


@register_measure("dynamical_stability", metric="excess",
                  paper=Paper("The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent",
                              2023, "2305.17490"))
def dynamical_stability(seed: int, *, optimizer: str = "gd", n_train: int = 8, in_features: int = 4,
                        width: int = 256, lr_factor: float = 1.5, max_steps: int = 20_000,
                        loss_tol: float = 1e-8) -> dict[str, float]:
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"dynamical_stability: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    gen, data, model, start, probe, q0, lr = stable_setup("dynamical_stability", seed, optimizer, n_train,
                                                         in_features, width, lr_factor, max_steps, loss_tol)
    steps, loss = train(model, data, optimizer, lr, max_steps, loss_tol, gen)
    out = {"lr": lr, "q_init": q0, "excess_init": lr * q0 / 2.0 - 1.0, "steps": float(steps),
           "final_loss": loss, "converged": float(_converged(loss, loss_tol))}
    if not _converged(loss, loss_tol):
        return {**out, "excess": float("nan"), "q_final": float("nan")}
    q = curvature(model, data, optimizer, probe)
    out.update({"q_final": q, "excess": lr * q / 2.0 - 1.0,
                "sharpness_final": curvature(model, data, "gd", probe),
                "trace_final": curvature(model, data, "sgd", probe)})
    if optimizer == "sgd":  # the contrast: GD at the same step from the same start
        model.load_state_dict(start)
        gd_steps, gd_loss = train(model, data, "gd", lr, max_steps, loss_tol, gen)
        out["gd_trace_excess"] = (lr * curvature(model, data, "sgd", probe) / 2.0 - 1.0
                                  if _converged(gd_loss, loss_tol) else float("nan"))
        out["gd_steps"] = float(gd_steps)
    return out
