r"""Sharpness at a global minimum as a parameter norm: two-layer ReLU and diagonal linear networks.

Paper: Wu & Su, "The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent",
2023 (ICML), arXiv:2305.17490 (abstract; Sec. 3-4). A global minimum that is linearly stable for SGD
has ``tr H <= 2/eta`` (GD only bounds ``lambda_max``); for two-layer ReLU networks and diagonal linear
networks the paper shows these sharpness measures are *equivalent to parameter norms*, so SGD's
stable minima have bounded norms and generalize. (Verified: the abstract. The paper's exact norms
and constants were not readable here; the identities below are derived and tested, and the AM-GM
step is how a trace bound becomes a norm bound.)

At a global minimum of the square loss ``L = (1/2n) sum_i (f(x_i) - y_i)^2`` every residual is 0, so the
Hessian is its Gauss-Newton part ``H = (1/n) sum_i grad f(x_i) grad f(x_i)^T = J^T J / n``:

    tr H = (1/n) sum_i ||grad_theta f(x_i)||^2,       ||H||_F = ||J J^T||_F / n = ||K||_F / n

(``K`` the empirical NTK Gram matrix; ``hessian_trace_at_minimum``, ``hessian_frobenius_at_minimum``).

Two-layer ReLU, ``f(x) = s sum_j a_j relu(w_j . x + b_j)`` (``s = 1/sqrt(m)`` for ``lens.theory.TwoLayerReLU``;
biases optional), ``z_ij = w_j . x_i + b_j``, ``c_i = ||x_i||^2 (+ 1 with biases)``:

    tr H = (s^2/n) sum_i sum_j [ relu(z_ij)^2 + a_j^2 c_i 1{z_ij > 0} ]
         >= (2 s^2/n) sum_i sum_j |a_j| relu(z_ij) sqrt(c_i)  =: 2 P(theta)          (AM-GM)

with equality when ``relu(z_ij) = |a_j| sqrt(c_i)`` on every active unit; ``P`` is a data-dependent path
norm (``sum_j |a_j| ||(w_j, b_j)||`` weighted by how the data activate neuron ``j``; on unit inputs
without biases, ``P <= s^2 sum_j |a_j| ||w_j||``, the path norm). So SGD stability ``tr H <= 2/eta`` gives
``P(theta) <= 1/eta``.

Diagonal linear network, ``f(x) = sum_k u_k v_k x_k`` (``beta = u * v``), ``m_k = (1/n) sum_i x_ik^2``:

    tr H = sum_k (u_k^2 + v_k^2) m_k  >=  2 sum_k |beta_k| m_k

(= ``||u||^2 + ||v||^2 >= 2 ||beta||_1`` for inputs with unit second moments; equality at balanced
``|u_k| = |v_k|``): SGD stability bounds the l1 norm of the predictor, ``||beta||_1 <= 1/eta``.

Not covered: the paper's Frobenius-norm notion of stability (its exact condition) and its
generalization bounds.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ShapeError
from ..ntk import empirical as empirical_ntk  # the submodule, not the lens package (no cycle through lens/__init__)

__all__ = ["diagonal_linear_l1", "diagonal_linear_trace", "hessian_frobenius_at_minimum", "hessian_trace_at_minimum",
           "two_layer_relu_path_norm", "two_layer_relu_trace"]


def _relu_parts(a: Tensor, w: Tensor, x: Tensor, b: Tensor | None) -> tuple[Tensor, Tensor]:
    if w.ndim != 2 or a.shape != (w.shape[0],) or x.ndim != 2 or x.shape[1] != w.shape[1] \
            or (b is not None and b.shape != a.shape):
        raise ShapeError(f"need a (m,), w (m, d), x (n, d), b (m,) or None; got {tuple(a.shape)}, {tuple(w.shape)}, "
                         f"{tuple(x.shape)}, {None if b is None else tuple(b.shape)}")
    a, w, x = a.detach(), w.detach(), x.detach()  # observations of the parameters, not part of a graph
    b = None if b is None else b.detach()
    z = x @ w.T + (0.0 if b is None else b)  # (n, m)
    c = x.square().sum(1) + (0.0 if b is None else 1.0)  # (n,)
    return z, c


def two_layer_relu_trace(a: Tensor, w: Tensor, x: Tensor, b: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``(s^2/n) sum_ij [relu(z_ij)^2 + a_j^2 c_i 1{z_ij > 0}]``: ``tr H`` at a global minimum."""
    z, c = _relu_parts(a, w, x, b)
    a = a.detach()
    per = torch.relu(z).square() + a.square() * c[:, None] * (z > 0).to(z.dtype)
    return scale**2 * per.sum() / x.shape[0]


def two_layer_relu_path_norm(a: Tensor, w: Tensor, x: Tensor, b: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``P = (s^2/n) sum_ij |a_j| relu(z_ij) sqrt(c_i)``, with ``tr H >= 2 P`` at a minimum."""
    z, c = _relu_parts(a, w, x, b)
    return scale**2 * (a.detach().abs() * torch.relu(z) * c.sqrt()[:, None]).sum() / x.shape[0]


def diagonal_linear_trace(u: Tensor, v: Tensor, x: Tensor) -> Tensor:
    """``sum_k (u_k^2 + v_k^2) m_k``, ``m_k = mean_i x_ik^2``: ``tr H`` of ``f = <u * v, x>`` at a minimum."""
    if u.shape != v.shape or u.ndim != 1 or x.ndim != 2 or x.shape[1] != u.shape[0]:
        raise ShapeError(f"need u, v (d,) and x (n, d); got {tuple(u.shape)}, {tuple(v.shape)}, {tuple(x.shape)}")
    u, v, x = u.detach(), v.detach(), x.detach()
    return ((u.square() + v.square()) * x.square().mean(0)).sum()


def diagonal_linear_l1(u: Tensor, v: Tensor, x: Tensor) -> Tensor:
    """``sum_k |u_k v_k| m_k`` (``= ||beta||_1`` for unit second moments), with ``tr H >= 2 x`` this."""
    if u.shape != v.shape or u.ndim != 1 or x.ndim != 2 or x.shape[1] != u.shape[0]:
        raise ShapeError(f"need u, v (d,) and x (n, d); got {tuple(u.shape)}, {tuple(v.shape)}, {tuple(x.shape)}")
    u, v, x = u.detach(), v.detach(), x.detach()
    return ((u * v).abs() * x.square().mean(0)).sum()


def _gram(model: nn.Module, x: Tensor) -> Tensor:
    """``J J^T`` as an ``(n O) x (n O)`` matrix (``lens.ntk.empirical``, side-effect free)."""
    k = empirical_ntk(model, x)  # (n, n, O, O)
    n, o = k.shape[0], k.shape[2]
    return k.permute(0, 2, 1, 3).reshape(n * o, n * o)


def hessian_trace_at_minimum(model: nn.Module, x: Tensor) -> Tensor:
    """``tr(J^T J) / n = tr K / n``: ``tr H`` of ``(1/2n) sum ||f(x_i) - y_i||^2`` wherever the residuals vanish."""
    return torch.diagonal(_gram(model, x)).sum() / x.shape[0]


def hessian_frobenius_at_minimum(model: nn.Module, x: Tensor) -> Tensor:
    """``||J^T J||_F / n = ||K||_F / n``: ``||H||_F`` of the same loss wherever the residuals vanish."""
    return torch.linalg.matrix_norm(_gram(model, x)) / x.shape[0]
