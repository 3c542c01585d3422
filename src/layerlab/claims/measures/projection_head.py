r"""Layer-wise feature weighting of a linear encoder + projection head, and linear probes before/after the head.

Paper: Xue, Gan, Ni, Joshi & Mirzasoleiman, "Investigating the Benefits of Projection Head for
Representation Learning", 2024, arXiv:2403.11391: under a contrastive loss the implicit bias of
training gives layer-wise progressive feature weighting (features increasingly unequal deeper in
the network), so the pre-projection representation is more normalised, which helps downstream
tasks that need features the pretraining objective down-weights (``lens.theory.projection_head``).

The measurement: ``K`` features of equal strength embedded in ``R^d`` (random orthonormal rows),
augmentation noise levels ``sigma_i`` evenly spaced in ``[0, sigma_max]``; encoder ``W_1`` (``h x d``)
and head ``W_2`` (``p x h``) from ``N(0, init^2)`` trained by gradient descent on the population
spectral contrastive loss (its exact expectation over data and augmentations; ``steps``, ``lr``).
Feature weights per layer ``w_i^{(l)} = s_i ||W^{(l)} e_i||``; ``exponent = log(max w^{(1)} / min
w^{(1)}) / log(max w^{(2)} / min w^{(2)})`` (theory: 1/2), ``error = |exponent - 1/2|``; the largest
relative gap of ``w^{(2)}`` from ``1 / (1 + sigma^2)`` (``post_error``). Probes: ridge regressions
(penalty ``alpha n ||beta||^2``) of the weakest feature ``z_K`` (the most corrupted by augmentation)
on the clean representations ``W_1 x`` and ``W_2 W_1 x``, each scaled to unit mean squared norm,
fitted on ``n_probe`` fresh examples, scored by R^2 on ``n_test``; ``probe_post_minus_pre`` is the
post-head R^2 minus the pre-head R^2 (negative: the pre-head layer is better).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import projection_head as ph
from ...lens.theory.feature_contamination import orthonormal_rows
from ...registry import Paper
from . import register_measure


def _ridge_r2(r_tr: torch.Tensor, y_tr: torch.Tensor, r_te: torch.Tensor, y_te: torch.Tensor, alpha: float) -> float:
    scale = r_tr.square().sum(1).mean().sqrt()
    a, b = r_tr / scale, r_te / scale
    n = a.shape[0]
    beta = torch.linalg.solve(a.T @ a + alpha * n * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y_tr)
    return float(1 - (b @ beta - y_te).square().sum() / (y_te - y_te.mean()).square().sum())


@register_measure("projection_head_weighting", metric="error",
                  paper=Paper("Investigating the Benefits of Projection Head for Representation Learning", 2024,
                              "2403.11391"))
def projection_head_weighting(seed: int, *, features: int = 6, sigma_max: float = 2.0, input_dim: int = 32,
                              hidden: int = 16, out_dim: int = 16, init: float = 0.01, steps: int = 5000,
                              lr: float = 0.05, alpha: float = 0.01, n_probe: int = 200,
                              n_test: int = 4000) -> dict[str, float]:
    if features < 2 or out_dim < features or hidden < features or input_dim < features or not sigma_max > 0:
        raise ConfigError(f"projection_head_weighting: need features >= 2, hidden, out_dim, input_dim >= features and "
                          f"sigma_max > 0; got features={features}, hidden={hidden}, out_dim={out_dim}, "
                          f"input_dim={input_dim}, sigma_max={sigma_max}")
    g = torch.Generator().manual_seed(seed)
    s = torch.ones(features, dtype=torch.float64)
    sigma = torch.linspace(0, sigma_max, features, dtype=torch.float64)
    basis = orthonormal_rows(features, input_dim, g)
    m, s2 = ph.second_moments(s, sigma, basis)
    w1 = init * torch.randn(hidden, input_dim, generator=g, dtype=torch.float64)
    w2 = init * torch.randn(out_dim, hidden, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w1, w2 = ph.train_two_layer(w1, w2, m, s2, steps=steps, lr=lr)
    finally:
        torch.set_num_threads(threads)
    pre, post = ph.layer_feature_weights(w1, s, basis), ph.layer_feature_weights(w2 @ w1, s, basis)
    _, post_opt = ph.optimal_weights(s, sigma)
    exponent = math.log(float(pre.max() / pre.min())) / math.log(float(post.max() / post.min()))
    out = {"error": abs(exponent - 0.5), "exponent": exponent,
           "post_error": float(((post - post_opt).abs() / post_opt).max()),
           "loss_gap": float(ph.population_loss(w2 @ w1, m, s2) + (s**2 / (s**2 * (1 + sigma**2)) ** 2 * s**2).sum()),
           "spread_pre": float(pre.max() / pre.min()), "spread_post": float(post.max() / post.min())}
    for i in range(features):
        out[f"w_pre_{i}"], out[f"w_post_{i}"] = float(pre[i]), float(post[i])
    z_tr = torch.randn(n_probe, features, generator=g, dtype=torch.float64)
    z_te = torch.randn(n_test, features, generator=g, dtype=torch.float64)
    x_tr, x_te = (s * z_tr) @ basis, (s * z_te) @ basis
    for name, w in (("pre", w1), ("post", w2 @ w1)):
        out[f"probe_r2_{name}"] = _ridge_r2(x_tr @ w.T, z_tr[:, -1], x_te @ w.T, z_te[:, -1], alpha)
    out["probe_post_minus_pre"] = out["probe_r2_post"] - out["probe_r2_pre"]
    return out
