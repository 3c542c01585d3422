r"""Neural collapse at the minimizer of a deep linear unconstrained-features model.

Paper: Dang, Tran, Osher, Tran-The, Ho & Nguyen, "Neural Collapse in Deep Linear Networks: From
Balanced to Imbalanced Data", 2023, arXiv:2301.00437, Sec. 4 (cross-entropy, balanced data). The
model: free last-stage features ``H = [h_1 ... h_N]`` (``d x N``, ``n`` per class, ``K`` classes)
passed through ``M`` linear layers, ``f(h) = W_M ... W_1 h`` (``W_M`` is the ``K x d`` classifier),
trained on

    (1/N) sum_i CE(W_M ... W_1 h_i, y_i) + (lambda_H / 2N) ||H||_F^2 + sum_m (lambda_W / 2) ||W_m||_F^2.

For balanced classes every global minimizer has neural collapse in the features entering the
classifier, ``H_{M-1} = W_{M-1} ... W_1 H``: (NC1) each feature equals its class mean; (NC2) the
centered class means, and the classifier's rows, form a simplex equiangular tight frame; (NC3)
the classifier's rows are proportional to the class means (self-duality).

The measurement trains the model by full-batch gradient descent from a small random start in
float64 and reads the collapse metrics of ``lens.collapse.metrics`` on ``H_{M-1}`` and ``W_M``:
``nc1 = tr(Sigma_W Sigma_B^+)/K``, ``nc2`` and ``nc2_classifier`` (Frobenius distances of the
normalized Gram matrices to the simplex ETF's) and ``nc3`` (distance between the normalized
classifier and centered means). ``error`` is the largest of the four: 0 at exact collapse.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import collapse
from ...registry import Paper
from . import register_measure


def ufm_loss(h: torch.Tensor, weights: list[torch.Tensor], labels: torch.Tensor, lambda_h: float,
             lambda_w: float) -> torch.Tensor:
    """The regularized cross-entropy objective of the deep linear unconstrained-features model."""
    z = h
    for w in weights:
        z = w @ z
    n = h.shape[1]
    ce = torch.nn.functional.cross_entropy(z.T, labels)
    return ce + lambda_h / (2 * n) * h.square().sum() + sum(lambda_w / 2 * w.square().sum() for w in weights)


def ufm_gradients(h: torch.Tensor, weights: list[torch.Tensor], labels: torch.Tensor, lambda_h: float,
                  lambda_w: float) -> list[torch.Tensor]:
    """Gradients of ``ufm_loss`` with respect to ``H`` and each ``W_m`` (in that order), by the chain
    rule through the linear layers: with ``G = (softmax(Z) - Y) / N``, ``dW_m = G_m Z_{m-1}^T`` and
    ``G_{m-1} = W_m^T G_m`` (small matrices instead of autograd; tested against it)."""
    zs = [h]
    for w in weights:
        zs.append(w @ zs[-1])
    n = h.shape[1]
    g = torch.softmax(zs[-1], dim=0)
    g[labels, torch.arange(n)] -= 1.0
    g = g / n
    dws = []
    for w, z in zip(reversed(weights), reversed(zs[:-1])):
        dws.append(g @ z.T + lambda_w * w)
        g = w.T @ g
    return [g + lambda_h / n * h, *reversed(dws)]


@register_measure("deep_linear_ufm_collapse", metric="error",
                  paper=Paper("Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data",
                              2023, "2301.00437"))
def deep_linear_ufm_collapse(seed: int, *, classes: int = 4, per_class: int = 8, width: int = 16,
                             depth: int = 2, lambda_h: float = 5e-3, lambda_w: float = 5e-3,
                             lr: float = 2.0, steps: int = 10_000, init_scale: float = 0.1) -> dict[str, float]:
    if classes < 2 or per_class < 1 or depth < 1 or width < classes - 1:
        raise ConfigError(f"deep_linear_ufm_collapse: need classes >= 2, per_class >= 1, depth >= 1 and "
                          f"width >= classes - 1; got {classes}, {per_class}, {depth}, {width}")
    if not (lr > 0 and lambda_h > 0 and lambda_w > 0 and init_scale > 0) or steps < 1:
        raise ConfigError("deep_linear_ufm_collapse: lr, lambda_h, lambda_w, init_scale must be > 0 and "
                          f"steps >= 1; got {lr}, {lambda_h}, {lambda_w}, {init_scale}, {steps}")
    gen = torch.Generator().manual_seed(seed)
    n = classes * per_class
    labels = torch.arange(classes).repeat_interleave(per_class)
    shapes = [(width, width)] * (depth - 1) + [(classes, width)]
    h = init_scale * torch.randn(width, n, generator=gen, dtype=torch.float64)
    weights = [init_scale * torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
    for _ in range(steps):
        grads = ufm_gradients(h, weights, labels, lambda_h, lambda_w)
        h = h - lr * grads[0]
        weights = [w - lr * g for w, g in zip(weights, grads[1:])]
    grads = ufm_gradients(h, weights, labels, lambda_h, lambda_w)
    features = h
    for w in weights[:-1]:
        features = w @ features
    m = collapse.metrics(features.T, labels, weights[-1])
    grad_norm = float(torch.sqrt(sum(g.square().sum() for g in grads)))
    final = ufm_loss(h, weights, labels, lambda_h, lambda_w)
    keys = ("nc1", "nc2", "nc2_classifier", "nc3")
    return {"error": max(m[k] for k in keys), **{k: m[k] for k in keys}, "grad_norm": grad_norm,
            "loss": float(final.detach())}
