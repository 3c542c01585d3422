r"""Automatic differentiation of ReLU networks at machine-representable parameters.

Paper: Lee, Park & Aiken, "On the Correctness of Automatic Differentiation for Neural Networks
with Machine-Representable Parameters", 2023, arXiv:2301.13370 (ICML 2023). For a network with
bias parameters whose parameters are machine-representable numbers: (i) the *incorrect set* (the
network is differentiable but AD does not return its derivative) is empty; (ii) the
*non-differentiable set* is small (a tight bound linear in the number of non-differentiabilities
of the activations); (iii) AD always returns a Clarke subderivative, even on the
non-differentiable set. Without biases, (i) can fail.

What this module computes (a two-layer ReLU MLP ``f(x) = a^T relu(W x + b) + c``, loss
``L = (1/n) sum_k f(x_k)``; PyTorch's AD uses ``relu'(0) = 0``):

- ``kink_pairs``: the (neuron, example) pairs whose pre-activation is exactly 0 in floating point,
  the only places where ``L`` can fail to be differentiable;
- ``place_on_kinks``: sets chosen biases to ``b_j = -fl(w_j . x_k)`` so that the forward pass meets
  exact zeros (machine-representable parameters on the non-differentiable set);
- ``adjacent_region_gradient``: the limit at the kink of the gradient of ``L`` in the region
  reached by lowering the biases of every kinked neuron (all of them switched off). ``L`` is
  smooth (polynomial) inside each region, so such limits are limits of gradients at
  differentiable points and belong to the Clarke subdifferential ``conv{lim grad L(theta_i) : theta_i -> theta}``; with
  biases this region always exists (each bias moves its own neuron only), which is why AD's
  choice ``relu'(0) = 0`` lands in it. (Our reading of the paper's argument; its proof covers
  general piecewise-analytic activations.)
- ``no_bias_counterexample``: ``g(w) = relu(w x) - relu(-w x) = w x`` is differentiable at
  ``w = 0`` with derivative ``x``, but AD returns 0: the incorrect set of a bias-free network
  need not be empty.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ShapeError

__all__ = ["adjacent_region_gradient", "ad_gradient", "kink_pairs", "mlp_loss", "no_bias_counterexample",
           "place_on_kinks"]


def _check(params: dict[str, Tensor], x: Tensor) -> None:
    w, b, a = params["w"], params["b"], params["a"]
    if x.dim() != 2 or w.shape[1] != x.shape[1] or b.shape != (w.shape[0],) or a.shape != (w.shape[0],):
        raise ShapeError(f"need x (n, d), w (h, d), b (h,), a (h,); got x {tuple(x.shape)}, w {tuple(w.shape)}, "
                         f"b {tuple(b.shape)}, a {tuple(a.shape)}")


def pre_activations(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``W x_k + b`` for every example: ``(n, h)``, computed as the forward pass computes it."""
    return x @ params["w"].T + params["b"]


def mlp_loss(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``L = (1/n) sum_k [a^T relu(W x_k + b) + c]``."""
    _check(params, x)
    return (torch.relu(pre_activations(params, x)) @ params["a"] + params["c"]).mean()


def ad_gradient(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """AD's gradient of ``mlp_loss`` (flattened in the order w, b, a, c)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(mlp_loss(leaves, x), [leaves[k] for k in ("w", "b", "a", "c")])
    return torch.cat([g.reshape(-1) for g in grads])


def kink_pairs(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``(m, 2)`` indices ``(example, neuron)`` whose pre-activation is exactly 0."""
    return (pre_activations(params, x) == 0).nonzero()


def place_on_kinks(params: dict[str, Tensor], x: Tensor, neurons: Tensor, examples: Tensor) -> dict[str, Tensor]:
    """A copy of ``params`` with ``b_j = -fl(w_j . x_k)`` for each pair ``(j, k)`` (later pairs win
    for a repeated neuron), so the forward pass computes ``fl(w_j . x_k) + b_j = 0`` exactly."""
    out = {k: v.clone() for k, v in params.items()}
    dots = x @ params["w"].T  # the same matmul the forward pass performs
    for j, k in zip(neurons.tolist(), examples.tolist()):
        out["b"][j] = -dots[k, j]
    return out


def _moved_gradient(params: dict[str, Tensor], x: Tensor, kinked: Tensor, delta: float) -> Tensor:
    moved = {k: v.clone() for k, v in params.items()}
    moved["b"][kinked] -= delta
    return ad_gradient(moved, x)


def adjacent_region_gradient(params: dict[str, Tensor], x: Tensor, delta: float) -> Tensor:
    """The limit, at ``params``, of the gradient in the region where every neuron with an exact-zero
    pre-activation is off (``delta > 0``; ``delta < 0``: on): those neurons' biases moved by
    ``-delta`` and ``-delta/2`` (small enough to cross no other kink). Inside one region the gradient
    is affine in that bias move (the ``a`` gradient follows ``relu(z)``; the others depend on the
    masks only), so ``2 g(delta/2) - g(delta)`` is its limit at ``delta -> 0``: an element of the
    Clarke subdifferential."""
    kinked = kink_pairs(params, x)[:, 1].unique()
    return 2 * _moved_gradient(params, x, kinked, delta / 2) - _moved_gradient(params, x, kinked, delta)


def no_bias_counterexample(x: float = 1.5, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
    """``(AD derivative, true derivative)`` of ``g(w) = relu(w x) - relu(-w x) = w x`` at ``w = 0``."""
    w = torch.zeros((), dtype=dtype, requires_grad=True)
    xx = torch.tensor(x, dtype=dtype)
    (grad,) = torch.autograd.grad(torch.relu(w * xx) - torch.relu(-w * xx), w)
    return float(grad), float(x)
