r"""The parameter norm that SGD's dynamical stability bounds, at the minima SGD and GD reach.

Paper: Wu & Su, "The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent",
2023, arXiv:2305.17490 (abstract; Sec. 4): for two-layer ReLU networks the sharpness measures at a
global minimum are equivalent to parameter norms, so a minimum that is linearly stable for SGD
(``tr H <= 2/eta``) has a bounded norm, while GD's stability (``lambda_max <= 2/eta``) is too weak to
bound it. ``lens.theory.stability_norms``: at a minimum ``tr H = (s^2/n) sum_ij [relu(z_ij)^2 + a_j^2
c_i 1{z_ij > 0}] >= 2 P(theta)``, ``P`` the data-dependent path norm ``(s^2/n) sum_ij |a_j| relu(z_ij)
sqrt(c_i)``, so stability for SGD gives ``eta P <= 1``.

The measurement is ``dynamical_stability``'s setting (``claims/measures/sgd_stability.py``: inputs
on the unit sphere, ``lens.theory.TwoLayerReLU`` with bias, ``L = (1/2n) sum (f - y)^2``, float64;
the step set above the trace bound at the start, ``eta = lr_factor * 2 / tr H(theta_0)``; SGD with one
example per step until ``L < loss_tol``), and at the minimum reached it reports

    norm_excess    = eta P(theta_T) - 1                           (<= 0: the norm bound)
    identity_error = |tr H_closed - tr H_hutch| / tr H_hutch      (the identity in practice)

with ``tr H_closed`` the parameter-norm form above and ``tr H_hutch`` ``lens.hessian.trace`` (Hutch++,
``min(3 * params, 150)`` products) of the training loss. Both NaN when SGD did not reach
``loss_tol``. For the contrast it runs full-batch GD at the same step from the same start and
reports ``gd_norm_excess`` (NaN if GD does not converge) and its ``gd_trace_excess = eta tr H / 2 - 1``.
"""
from __future__ import annotations

import math

import torch

from ...lens import theory
from ...lens.theory import stability_norms as norms
from ...registry import Paper
from . import register_measure
from .sgd_stability import _converged, curvature, stable_setup, train


def _norm_terms(model: theory.TwoLayerReLU, x: torch.Tensor) -> tuple[float, float]:
    """(closed-form ``tr H`` at a minimum, path norm ``P``) of a ``TwoLayerReLU``."""
    s = 1.0 / math.sqrt(model.width)
    return (float(norms.two_layer_relu_trace(model.a, model.w, x, model.b, s)),
            float(norms.two_layer_relu_path_norm(model.a, model.w, x, model.b, s)))


@register_measure("sgd_stability_norms", metric="norm_excess",
                  paper=Paper("The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent",
                              2023, "2305.17490"))
def sgd_stability_norms(seed: int, *, n_train: int = 8, in_features: int = 4, width: int = 256,
                        lr_factor: float = 1.5, max_steps: int = 20_000, loss_tol: float = 1e-8) -> dict[str, float]:
    gen, data, model, start, probe, q0, lr = stable_setup("sgd_stability_norms", seed, "sgd", n_train,
                                                         in_features, width, lr_factor, max_steps, loss_tol)
    x = data[0]
    p0 = _norm_terms(model, x)[1]
    steps, loss = train(model, data, "sgd", lr, max_steps, loss_tol, gen)
    out = {"lr": lr, "trace_init": q0, "norm_excess_init": lr * p0 - 1.0, "steps": float(steps), "final_loss": loss,
           "converged": float(_converged(loss, loss_tol))}
    if _converged(loss, loss_tol):
        closed, path = _norm_terms(model, x)
        hutch = curvature(model, data, "sgd", probe)
        out.update({"norm_excess": lr * path - 1.0, "identity_error": abs(closed - hutch) / hutch,
                    "trace_closed": closed, "trace_hutch": hutch, "path_norm": path,
                    "trace_excess": lr * closed / 2.0 - 1.0})
    else:
        out.update({"norm_excess": float("nan"), "identity_error": float("nan")})
    model.load_state_dict(start)  # the contrast: GD at the same step from the same start
    gd_steps, gd_loss = train(model, data, "gd", lr, max_steps, loss_tol, gen)
    out["gd_steps"] = float(gd_steps)
    if _converged(gd_loss, loss_tol):
        closed, path = _norm_terms(model, x)
        out.update({"gd_norm_excess": lr * path - 1.0, "gd_trace_excess": lr * closed / 2.0 - 1.0})
    else:
        out.update({"gd_norm_excess": float("nan"), "gd_trace_excess": float("nan")})
    return out
