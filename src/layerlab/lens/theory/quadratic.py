r"""Neural quadratic models: a network's second-order Taylor expansion in its parameters, and the
catapult phase of gradient descent on it.

Paper: Zhu, Liu, Radhakrishnan & Belkin, "Quadratic models for understanding neural network
dynamics", 2022, arXiv:2205.11787 (Secs. 2-3). The neural quadratic model (NQM) of a network
:math:`f(\theta; x)` at :math:`\theta_0` is

.. math:: f_{\text{quad}}(\theta; x) = f(\theta_0; x) + \nabla f(\theta_0; x)^\top(\theta-\theta_0)
          + \tfrac12 (\theta-\theta_0)^\top \nabla^2 f(\theta_0; x) (\theta-\theta_0).

Trained by gradient descent with step :math:`\eta` on the square loss, with :math:`\lambda_0` the
top eigenvalue of the tangent kernel at initialization (so that the linear model's critical step
is :math:`2/\lambda_0`), the paper proves three regimes for wide 2-layer networks: for
:math:`\eta < 2/\lambda_0` the loss decreases monotonically (linear dynamics, the kernel nearly
constant); for :math:`2/\lambda_0 < \eta < 4/\lambda_0` the loss first grows, then the top
kernel eigenvalue :math:`\lambda` falls below :math:`2/\eta` and the loss converges (the catapult
phase of Lewkowycz et al. 2020); for :math:`\eta > 4/\lambda_0` it diverges.

For the 2-layer ReLU network of `layerlab.lens.theory.TwoLayerReLU`,
:math:`f = \frac{1}{\sqrt m}\sum_j a_j\,\mathrm{relu}(w_j^\top x + b_j)`, the only nonzero second
derivatives are the cross terms :math:`\partial^2 f / \partial a_j \partial w_j =
\mathbb 1[w_{0j}^\top x + b_{0j} > 0]\, x / \sqrt m` (and likewise for ``b_j``; ``relu'' = 0``
almost everywhere), and the expansion collapses to a closed form: the network with its ReLU
gates frozen at initialization,

.. math:: f_{\text{quad}}(a, w, b; x) = \frac{1}{\sqrt m}\sum_j a_j\, s_j(x)\,(w_j^\top x + b_j),
          \qquad s_j(x) = \mathbb 1[w_{0j}^\top x + b_{0j} > 0],

since :math:`\mathrm{relu}(h_0) = s\,h_0`. `QuadraticReLU` is that form (fast); `second_order_taylor`
is the expansion itself by nested forward-mode derivatives of any module (the reference the
tests compare it to).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ...errors import ShapeError
from .kernels import TwoLayerReLU

__all__ = ["QuadraticReLU", "second_order_taylor"]


class QuadraticReLU(nn.Module):
    """The neural quadratic model of a `TwoLayerReLU` at its current parameters (see the module
    docstring). Parameters ``w`` (m, d), ``a`` (m,), ``b`` (m,) if the network has a bias, starting
    at the network's values; the gates come from the initial ``w0``, ``b0`` (buffers). At the
    initialization its value and gradient equal the network's.

    Shape: ``(*, in_features) -> (*, 1)``."""

    def __init__(self, net: TwoLayerReLU) -> None:
        super().__init__()
        self.in_features, self.width = net.in_features, net.width
        self.w = nn.Parameter(net.w.detach().clone())
        self.a = nn.Parameter(net.a.detach().clone())
        self.b = None if net.b is None else nn.Parameter(net.b.detach().clone())
        self.register_buffer("w0", net.w.detach().clone())
        self.register_buffer("b0", None if net.b is None else net.b.detach().clone())

    def gates(self, x: Tensor) -> Tensor:
        h0 = x @ self.w0.T
        return (h0 if self.b0 is None else h0 + self.b0) > 0

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"QuadraticReLU: expected inputs (*, {self.in_features}), got shape {tuple(x.shape)}")
        h = x @ self.w.T
        if self.b is not None:
            h = h + self.b
        return ((h * self.gates(x)) @ self.a).unsqueeze(-1) / math.sqrt(self.width)


def second_order_taylor(model: nn.Module, theta0: dict[str, Tensor], theta: dict[str, Tensor], x: Tensor) -> Tensor:
    r"""``f(θ0) + J(θ0)Δ + ½ Δᵀ∇²f(θ0)Δ`` with ``Δ = θ - θ0`` (dicts by parameter name), by
    ``torch.func.jvp`` twice: the second directional derivative
    :math:`\frac{d^2}{dt^2} f(\theta_0 + t\Delta)\big|_{t=0} = \Delta^\top \nabla^2 f \Delta`."""
    delta = {k: theta[k] - theta0[k] for k in theta0}

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(model, p, (x,))

    def directional(p: dict[str, Tensor]) -> Tensor:
        return jvp(f, (p,), (delta,))[1]

    f0, first = jvp(f, (theta0,), (delta,))
    second = jvp(directional, (theta0,), (delta,))[1]
    return f0 + first + 0.5 * second
