r"""Gradient descent on a balanced deep linear network against the end-to-end update, to O(eta^2).

Paper: Arora, Cohen & Hazan, "On the Optimization of Deep Networks: Implicit Acceleration by
Overparameterization", 2018, arXiv:1802.06509, Theorem 1 and its discrete form
``W_e(t+1) = W_e(t) - eta sum_{j=1}^{N} [W_e W_e^T]^{(j-1)/N} dL/dW(W_e) [W_e^T W_e]^{(N-j)/N}``
(``lens.theory.implicit_acceleration``).

The measurement builds a balanced depth-``depth`` factorization (``models.deep_linear.balanced_factors``)
of a random end-to-end matrix, takes one gradient-descent step on the factors of the paper's
``l_p`` regression loss ``L(W) = (1/m) sum_i |W x_i - y_i|_p^p`` (``p = 4`` by default, as in the
paper's experiments) at steps ``eta`` and ``eta / 2``, and compares each new product with the
end-to-end update from the same ``W_e``. With ``err(eta) = ||W_e^{factors}(t+1) - W_e^{end-to-end}(t+1)||_F``
the observed order is ``log2(err(eta) / err(eta/2))``: 2 when the update holds to first order and
the remainder is ``O(eta^2)``, 1 if it were wrong at first order. ``error = |order - 2|``.
``relative_gap`` is ``err(eta) / ||W_e(t+1) - W_e(t)||_F`` (the gap against the size of the step);
``naive_order`` repeats the comparison with the unpreconditioned step ``W_e - eta dL/dW`` (plain
gradient descent on the end-to-end matrix), which differs at first order (order ~1, unless
``depth = 1``). float64 throughout.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import implicit_acceleration as ia
from ...models.deep_linear import balanced_factors
from ...registry import Paper
from . import register_measure


@register_measure("implicit_acceleration_update", metric="error",
                  paper=Paper("On the Optimization of Deep Networks: Implicit Acceleration by Overparameterization",
                              2018, "1802.06509"))
def implicit_acceleration_update(seed: int, *, depth: int = 3, in_features: int = 6, out_features: int = 4,
                                 width: int = 8, samples: int = 32, p: float = 4.0, lr: float = 1e-3,
                                 init_scale: float = 1.0) -> dict[str, float]:
    if depth < 1 or samples < 1 or not p >= 1 or not lr > 0 or not init_scale > 0:
        raise ConfigError(f"implicit_acceleration_update: need depth >= 1, samples >= 1, p >= 1, lr > 0, init_scale > 0; "
                          f"got depth={depth}, samples={samples}, p={p}, lr={lr}, init_scale={init_scale}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, in_features, generator=g, dtype=torch.float64)
    y = torch.randn(samples, out_features, generator=g, dtype=torch.float64)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return (x @ w.T - y).abs().pow(p).sum(1).mean()

    target = init_scale * torch.randn(out_features, in_features, generator=g, dtype=torch.float64) / math.sqrt(in_features)
    factors = balanced_factors(target, depth, width, generator=g)
    w = target
    wg = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(wg), wg)
    errs, naive, steps = [], [], []
    for eta in (lr, lr / 2):
        _, w_fact = ia.factor_gd_step(factors, loss, eta)
        errs.append(float(torch.linalg.matrix_norm(w_fact - ia.end_to_end_step(w, grad, eta, depth))))
        naive.append(float(torch.linalg.matrix_norm(w_fact - (w - eta * grad))))
        steps.append(float(torch.linalg.matrix_norm(w_fact - w)))
    order = math.log2(errs[0] / errs[1])
    balance = max(float(torch.linalg.matrix_norm(factors[j + 1].T @ factors[j + 1] - factors[j] @ factors[j].T))
                  for j in range(depth - 1)) if depth > 1 else 0.0
    return {"error": abs(order - 2), "order": order, "relative_gap": errs[0] / steps[0],
            "naive_order": math.log2(naive[0] / naive[1]), "naive_relative_gap": naive[0] / steps[0],
            "balance_violation": balance}
