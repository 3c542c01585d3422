r"""A linear encoder with a projection head under the spectral contrastive loss: layer-wise feature weighting.

Paper: Xue, Gan, Ni, Joshi & Mirzasoleiman, "Investigating the Benefits of Projection Head for
Representation Learning", 2024 (ICLR), arXiv:2403.11391 (abstract and summaries: a two-layer linear
model trained with a (spectral) contrastive loss; the implicit bias of training leads to layer-wise
progressive feature weighting, features becoming increasingly unequal deeper in the network, so the
pre-projection layer is more normalised and less specialised).

Setting (ours, in the paper's spirit; the exact data model of the paper was not read). Features
``e_1..e_K`` (orthonormal rows of ``P``, ``K x d``) with strengths ``s_i``: ``x = sum_i s_i z_i e_i``,
``z_i ~ N(0, 1)``; an augmented view adds independent noise of relative size ``sigma_i``,
``x^a = sum_i s_i (z_i + sigma_i xi^a_i) e_i``. The model is ``f(x) = W_2 W_1 x`` (encoder ``W_1``, head
``W_2``) and the spectral contrastive loss (HaoChen et al. 2021)

    L(f) = -2 E[f(x^a)^T f(x^b)] + E[(f(x^a)^T f(x'^b))^2]
         = -2 tr(W M W^T) + ||W S W^T||_F^2,   W = W_2 W_1,

with ``M = E[x^a x^b^T] = sum_i s_i^2 e_i e_i^T`` (positive pair) and ``S = E[x x^T] = sum_i
s_i^2 (1 + sigma_i^2) e_i e_i^T`` (independent views). With at least ``K`` output dimensions its
minimisers have orthogonal columns ``c_i = W e_i`` with ``|c_i|^2 = 1 / (s_i^2 (1 + sigma_i^2)^2)``,
so feature ``i`` enters the output with the weight ``w_i^{(2)} = s_i |c_i| = 1 / (1 + sigma_i^2)``
(augmentation-robust features are kept, the rest are down-weighted, whatever their strength).
Gradient flow from a small initialisation keeps the layers balanced, ``W_1 W_1^T = W_2^T W_2`` (up to
the initial imbalance), so ``W_1^T W_1 = (W^T W)^{1/2}`` and the pre-projection weight of feature
``i`` is ``w_i^{(1)} = s_i |c_i|^{1/2} = (s_i w_i^{(2)})^{1/2}``: each layer's log-weights interpolate
between the input's (``log s_i``) and the output's, ``log w^{(1)} = (log s + log w^{(2)}) / 2``. With
equal strengths the spread of the weights doubles in log from the pre-head layer to the output:
``log(max w^{(1)} / min w^{(1)}) = (1/2) log(max w^{(2)} / min w^{(2)})`` (our derivation; the
progressive weighting of the abstract).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["augmented_pairs", "empirical_loss", "layer_feature_weights", "optimal_weights", "population_loss",
           "second_moments", "train_two_layer"]


def _check_features(s: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    s, sigma = torch.as_tensor(s, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    if s.dim() != 1 or sigma.shape != s.shape:
        raise ShapeError(f"strengths s and noise levels sigma must be (K,) each; got {tuple(s.shape)}, {tuple(sigma.shape)}")
    if bool((s <= 0).any()) or bool((sigma < 0).any()):
        raise ConfigError("feature strengths s must be > 0 and augmentation noise levels sigma >= 0")
    return s, sigma


def second_moments(s: Tensor, sigma: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    """``M = P^T diag(s^2) P`` (positive pairs) and ``S = P^T diag(s^2 (1 + sigma^2)) P`` (one view)."""
    s, sigma = _check_features(s, sigma)
    if basis.shape[0] != s.shape[0]:
        raise ShapeError(f"the basis P has {basis.shape[0]} rows but there are {s.shape[0]} features")
    return basis.T @ torch.diag(s**2) @ basis, basis.T @ torch.diag(s**2 * (1 + sigma**2)) @ basis


def population_loss(w: Tensor, m: Tensor, s2: Tensor) -> Tensor:
    """``-2 tr(W M W^T) + ||W S W^T||_F^2`` for the end-to-end ``W`` (p x d)."""
    return -2 * torch.trace(w @ m @ w.T) + (w @ s2 @ w.T).square().sum()


def augmented_pairs(n: int, s: Tensor, sigma: Tensor, basis: Tensor,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(x^a, x^b, z)``: ``n`` positive pairs (``(n, d)`` each) and their clean feature values ``z (n, K)``."""
    s, sigma = _check_features(s, sigma)
    k = s.shape[0]
    z = torch.randn(n, k, generator=generator, dtype=torch.float64)
    xa = (s * (z + sigma * torch.randn(n, k, generator=generator, dtype=torch.float64))) @ basis
    xb = (s * (z + sigma * torch.randn(n, k, generator=generator, dtype=torch.float64))) @ basis
    return xa, xb, z


def empirical_loss(fa: Tensor, fb: Tensor) -> Tensor:
    """Unbiased batch estimate: ``-2 mean_k fa_k.fb_k + mean_{k != l} (fa_k.fb_l)^2``."""
    if fa.shape != fb.shape or fa.dim() != 2 or fa.shape[0] < 2:
        raise ShapeError(f"need two (n >= 2, p) batches of representations; got {tuple(fa.shape)}, {tuple(fb.shape)}")
    n = fa.shape[0]
    g = fa @ fb.T
    off = g.square().sum() - torch.diagonal(g).square().sum()
    return -2 * torch.diagonal(g).mean() + off / (n * (n - 1))


def optimal_weights(s: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Closed form (module docstring): pre-head ``(s / (1 + sigma^2))^{1/2}`` and post-head ``1 / (1 + sigma^2)``."""
    s, sigma = _check_features(s, sigma)
    post = 1 / (1 + sigma**2)
    return (s * post).sqrt(), post


def layer_feature_weights(w: Tensor, s: Tensor, basis: Tensor) -> Tensor:
    """``s_i ||W e_i||``: the weight of feature ``i`` in the representation ``W x`` (``W`` of any layer)."""
    return torch.as_tensor(s, dtype=torch.float64) * (w @ basis.T).norm(dim=0)


def train_two_layer(w1: Tensor, w2: Tensor, m: Tensor, s2: Tensor, *, steps: int, lr: float) -> tuple[Tensor, Tensor]:
    """Gradient descent on ``population_loss(W_2 W_1)`` over both layers (new tensors; inputs untouched)."""
    if steps < 0 or not lr > 0:
        raise ConfigError(f"train_two_layer needs steps >= 0 and lr > 0; got steps={steps}, lr={lr}")
    if w1.dim() != 2 or w2.dim() != 2 or w2.shape[1] != w1.shape[0] or w1.shape[1] != m.shape[0]:
        raise ShapeError(f"need W_1 (h, d), W_2 (p, h) and M (d, d); got {tuple(w1.shape)}, {tuple(w2.shape)}, {tuple(m.shape)}")
    w1 = w1.detach().clone().requires_grad_(True)
    w2 = w2.detach().clone().requires_grad_(True)
    for _ in range(steps):
        g1, g2 = torch.autograd.grad(population_loss(w2 @ w1, m, s2), [w1, w2])
        with torch.no_grad():
            w1 -= lr * g1
            w2 -= lr * g2
    return w1.detach(), w2.detach()
