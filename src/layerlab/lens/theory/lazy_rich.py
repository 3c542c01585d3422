r"""The centred, output-scaled model of the lazy-to-rich transition, and its lazy (kernel) limit.

Paper: Kumar, Bordelon, Gershman & Pehlevan, "Grokking as the Transition from Lazy to Rich Training
Dynamics", 2023 (ICLR 2024), arXiv:2310.06110 (abstract; Sec. 2-3). The network's output is centred
at its initialization and scaled by ``alpha`` (Chizat, Oyallon & Bach's lazy scaling),

    h(x) = alpha (f_theta(x) - f_theta0(x)),       L = (1 / 2 alpha^2) (1/P) sum_mu (h(x_mu) - y_mu)^2,

so ``h = 0`` at the start whatever the width, and gradient descent moves the function at a rate that
does not depend on ``alpha`` while the parameters move ``O(1/alpha)``: a large ``alpha`` keeps the network
in its linearized (lazy, kernel) regime for longer, which delays feature learning and so the
test-loss drop -- the grokking delay grows with ``alpha``.

- ``CentredModel(model, alpha)``: ``h`` as an ``nn.Module`` (a frozen copy of the model at
  construction gives ``f_theta0``; its parameters do not require gradients);
  ``lazy_loss(h, y, alpha)``: the loss above.
- ``linearized_trajectory(k0, y, lr, steps)``: the lazy limit ``alpha -> infinity`` of full-batch GD on
  ``L``: ``h_{t+1} - y = (I - (lr/P) K_0)(h_t - y)`` from ``h_0 = 0``, i.e. ``h_t = (I - (I - lr K_0 / P)^t) y``
  on the training inputs, with ``K_0 = J_0 J_0^T`` the initial empirical NTK (``lens.ntk.empirical``).
  (Derivation: ``grad_theta L = (1 / alpha P) J^T (h - y)`` and ``dh = alpha J dtheta``.) The test
  checks that a trained ``CentredModel`` approaches it as ``O(1/alpha)``.
- ``target_weight_alignment(W, beta)``: ``||W beta||^2 / (||W||_F^2 ||beta||^2)``, the share of the
  first-layer weights' power along the target direction of a single-index task (``1/D`` in
  expectation for isotropic weights, 1 when every neuron points along ``beta``): the feature
  learning that the lazy regime lacks. The paper tracks the alignment of the first-layer weights
  with the target direction; this normalisation is ours.

``claims/measures/grokking_lazy_rich.py`` (card ``grokking-lazy-rich-alpha-delay``) trains the same
centred model on the paper's polynomial single-index task (its own inline form predates this module).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError

__all__ = ["CentredModel", "lazy_loss", "linearized_trajectory", "target_weight_alignment"]


class CentredModel(nn.Module):
    """``h(x) = alpha (f_theta(x) - f_theta0(x))``: ``model`` is trained, a frozen copy of it at
    construction gives ``f_theta0``. Shape: that of ``model``'s output."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0):
            raise ConfigError(f"CentredModel: alpha (the output scale) must be a number > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.model = model
        self.initial = copy.deepcopy(model).requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            f0 = self.initial(x)
        return self.alpha * (self.model(x) - f0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


def lazy_loss(h: Tensor, y: Tensor, alpha: float) -> Tensor:
    """``(1 / 2 alpha^2) mean (h - y)^2``."""
    if h.shape != y.shape:
        raise ShapeError(f"lazy_loss: h and y must have the same shape, got {tuple(h.shape)} and {tuple(y.shape)}")
    return 0.5 * (h - y).square().mean() / alpha**2


def linearized_trajectory(k0: Tensor, y: Tensor, lr: float, steps: int) -> Tensor:
    """``h_t = (I - (I - lr K_0 / P)^t) y`` on the ``P`` training inputs after ``steps`` GD steps (``K_0``: ``P x P``)."""
    if k0.ndim != 2 or k0.shape[0] != k0.shape[1] or y.shape != (k0.shape[0],):
        raise ShapeError(f"linearized_trajectory: need K_0 (P, P) and y (P,), got {tuple(k0.shape)}, {tuple(y.shape)}")
    if not lr > 0 or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"linearized_trajectory: need lr > 0 and an integer steps >= 0, got {lr!r}, {steps!r}")
    p = k0.shape[0]
    step = torch.eye(p, dtype=k0.dtype) - lr * k0 / p
    return y - torch.linalg.matrix_power(step, steps) @ y


def target_weight_alignment(w: Tensor, beta: Tensor) -> Tensor:
    """``||W beta||^2 / (||W||_F^2 ||beta||^2)`` for first-layer weights ``W`` (``m x D``) and a direction ``beta`` (``D``)."""
    if w.ndim != 2 or beta.shape != (w.shape[1],):
        raise ShapeError(f"target_weight_alignment: need W (m, D) and beta (D,), got {tuple(w.shape)}, {tuple(beta.shape)}")
    w, beta = w.detach().to(torch.float64), beta.detach().to(torch.float64)
    return (w @ beta).square().sum() / (w.square().sum() * beta.square().sum())
