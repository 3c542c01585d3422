r"""The catapult phase of gradient descent on a neural quadratic model.

Paper: Zhu, Liu, Radhakrishnan & Belkin, "Quadratic models for understanding neural network
dynamics", 2022, arXiv:2205.11787 (abstract; Sec. 3, one training example). With
:math:`\lambda_0` the top eigenvalue of the tangent kernel at initialization and
:math:`\eta_{crit} = 2/\lambda_0`, gradient descent on the square loss of the neural quadratic
model (NQM) of a wide 2-layer network

* converges monotonically for :math:`\eta < 2/\lambda_0` (linear dynamics);
* for :math:`2/\lambda_0 < \eta < 4/\lambda_0` (the catapult phase) the loss first grows, the
  kernel's top eigenvalue :math:`\lambda` then falls below :math:`2/\eta`, and the loss converges;
* diverges for :math:`\eta > 4/\lambda_0`.

The measurement builds ``lens.theory.TwoLayerReLU`` (NTK parameterization, width ``width``) on
``n_train`` inputs on the unit sphere in ``in_features`` dimensions with targets
``sqrt(d) x_0 + d x_1 x_2`` (``measures.ntk_width.sphere_regression``), and its NQM
(``lens.theory.quadratic.QuadraticReLU``, ``model = "quadratic"``) or the network itself
(``"network"``), float64. The loss is :math:`L = \frac{1}{2n}\sum_i (f(x_i) - y_i)^2`, so the
kernel eigenvalue is :math:`\lambda = \lambda_{\max}(JJ^\top/n)`, the top eigenvalue of the
Gauss–Newton matrix :math:`G = J^\top J/n` (``lens.curvature.GaussNewtonOperator``, Lanczos).
For each ``factor`` of ``factors`` it trains from the same initialization by full-batch GD at
``η = factor · 2/λ_0`` until ``L < loss_tol · L_0`` (converged), ``L > blowup · L_0`` or not
finite (diverged), or ``max_steps``, and checks the paper's prediction for that regime:

* ``factor < 1``: converged, and the loss never rose above ``L_0``;
* ``1 < factor < 2``: converged, the loss rose above ``L_0`` first (the spike), and
  ``η λ_final / 2 < 1``;
* ``factor > 2``: diverged.

``violations`` counts the predictions that failed over all factors (0 when every regime behaves
as the paper says). Per factor ``f`` it also returns ``spike.f`` (``max_t L_t / L_0``),
``edge_final.f`` (``η λ_final / 2``, NaN when diverged), ``steps.f`` and ``outcome.f``
(1 converged, -1 diverged, 0 neither).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import curvature, theory
from ...lens.theory.quadratic import QuadraticReLU
from ...registry import Paper
from . import register_measure
from .ntk_width import sphere_regression

MODELS = ("quadratic", "network")
Batch = tuple[torch.Tensor, torch.Tensor]


def kernel_top(model: nn.Module, data: Batch, generator: torch.Generator) -> float:
    """``λ_max(J Jᵀ / n)`` = ``λ_max(G)`` for the loss ``(1/2n) Σ (f - y)²``."""
    G = curvature.GaussNewtonOperator(model, [data], loss="half_mse")
    return float(G.top_eigenvalues(1, max_iter=min(G.dim, 4 * data[0].shape[0] + 20), generator=generator)[0])


def half_mse(model: nn.Module, data: Batch) -> torch.Tensor:
    x, y = data
    return 0.5 * (model(x) - y).square().mean()


def run_gd(model: nn.Module, data: Batch, lr: float, max_steps: int, loss_tol: float,
           blowup: float) -> dict[str, float]:
    """Full-batch GD at step ``lr``; the outcome (1 converged, -1 diverged, 0 neither), steps,
    ``max_t L_t / L_0``. Changes ``model`` in place."""
    params = list(model.parameters())
    with torch.no_grad():
        l0 = half_mse(model, data).item()
    top, outcome, steps = l0, 0.0, 0
    for steps in range(1, max_steps + 1):
        loss = half_mse(model, data)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
            value = half_mse(model, data).item()
        if not math.isfinite(value) or value > blowup * l0:
            outcome = -1.0
            break
        top = max(top, value)
        if value < loss_tol * l0:
            outcome = 1.0
            break
    return {"outcome": outcome, "steps": float(steps), "spike": top / l0}


def _regime(factor: float) -> str:
    return "linear" if factor < 1 else "catapult" if factor < 2 else "divergent"


@register_measure("catapult", metric="violations",
                  paper=Paper("Quadratic models for understanding neural network dynamics", 2022, "2205.11787"))
def catapult(seed: int, *, model: str = "quadratic", width: int = 2048, in_features: int = 4, n_train: int = 1,
             factors: tuple[float, ...] | list[float] = (0.5, 1.5, 2.5), max_steps: int = 5000,
             loss_tol: float = 1e-8, blowup: float = 1e8) -> dict[str, float]:
    if model not in MODELS:
        raise ConfigError(f"catapult: model must be one of {MODELS}, got {model!r}")
    factors = [float(f) for f in factors]
    if not factors or any(not f > 0 or f in (1.0, 2.0) for f in factors):
        raise ConfigError(f"catapult: factors (eta in units of 2/lambda_0) must be positive and not exactly 1 or 2 "
                          f"(the boundaries between regimes), got {factors}")
    if width < 1 or n_train < 1 or in_features < 3 or max_steps < 1 or not 0 < loss_tol < 1 or not blowup > 1:
        raise ConfigError("catapult: need width >= 1, n_train >= 1, in_features >= 3, max_steps >= 1, "
                          f"0 < loss_tol < 1, blowup > 1; got {width}, {n_train}, {in_features}, {max_steps}, "
                          f"{loss_tol}, {blowup}")
    gen = torch.Generator().manual_seed(seed)
    x, y = sphere_regression(n_train, in_features, gen)
    data = (x, y[:, None])
    net = theory.TwoLayerReLU(in_features, width, gen, dtype=torch.float64)
    probe = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    violations = 0
    lam0 = None
    for f in factors:
        m = QuadraticReLU(net) if model == "quadratic" else theory.TwoLayerReLU(in_features, width, dtype=torch.float64)
        if model == "network":
            m.load_state_dict(net.state_dict())
        if lam0 is None:
            lam0 = kernel_top(m, data, probe)
        lr = f * 2.0 / lam0
        res = run_gd(m, data, lr, max_steps, loss_tol, blowup)
        edge = lr * kernel_top(m, data, probe) / 2.0 if res["outcome"] >= 0 else math.nan
        regime = _regime(f)
        if regime == "linear":
            ok = res["outcome"] == 1.0 and res["spike"] <= 1.0
        elif regime == "catapult":
            ok = res["outcome"] == 1.0 and res["spike"] > 1.0 and edge < 1.0
        else:
            ok = res["outcome"] == -1.0
        violations += not ok
        out.update({f"spike.{f:g}": res["spike"], f"edge_final.{f:g}": edge, f"steps.{f:g}": res["steps"],
                    f"outcome.{f:g}": res["outcome"]})
    return {"violations": float(violations), "lambda_0": float(lam0), **out}
