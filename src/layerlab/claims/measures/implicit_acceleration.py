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


def _lp_loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    return (x @ w.reshape(-1) - y).abs().pow(p).mean()


def _final_loss(factors: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, p: float, lr: float,
                steps: int) -> float:
    """Training loss after ``steps`` of gradient descent on the factors (inf if it diverges)."""
    ws = [f.clone().requires_grad_(True) for f in factors]
    for _ in range(steps):
        loss = _lp_loss(ia._product(ws), x, y, p)
        if not torch.isfinite(loss) or loss.item() > 1e12:
            return math.inf
        grads = torch.autograd.grad(loss, ws)
        with torch.no_grad():
            for w, g in zip(ws, grads):
                w.sub_(lr * g)
    with torch.no_grad():
        final = float(_lp_loss(ia._product(ws), x, y, p))
    return final if math.isfinite(final) else math.inf


@register_measure("implicit_acceleration_lp", metric="log_loss_ratio",
                  paper=Paper("On the Optimization of Deep Networks: Implicit Acceleration by Overparameterization",
                              2018, "1802.06509"))
def implicit_acceleration_lp(seed: int, *, depth: int = 3, width: int = 8, in_features: int = 20, samples: int = 200,
                             p: float = 4.0, steps: int = 1000, lrs: tuple[float, ...] | list[float] = (
                                 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 0.1, 0.2, 0.5, 1.0),
                             condition: float = 10.0, noise: float = 0.1) -> dict[str, float]:
    r"""The paper's experiment at small scale: ``l_p`` linear regression (``p > 2``) by gradient descent on
    the linear model (depth 1) and on a depth-``depth`` linear network (width ``width``, balanced
    factorization of the same initial end-to-end vector), each at its best step in ``lrs``; the
    statistic is ``log(best loss of the deep network / best loss of the linear model)`` after ``steps``
    steps (negative: depth accelerated). Inputs have column scales spread geometrically over a factor
    ``condition``; targets ``y = X w* + noise``; the initial end-to-end vector is ``N(0, I/d)``."""
    if depth < 2 or steps < 1 or not lrs or not p >= 1:
        raise ConfigError(f"implicit_acceleration_lp: need depth >= 2, steps >= 1, a learning-rate grid and p >= 1; "
                          f"got depth={depth}, steps={steps}, lrs={list(lrs)}, p={p}")
    g = torch.Generator().manual_seed(seed)
    scales = condition ** (-torch.linspace(0, 1, in_features, dtype=torch.float64))
    x = torch.randn(samples, in_features, generator=g, dtype=torch.float64) * scales
    w_star = torch.randn(in_features, generator=g, dtype=torch.float64)
    y = x @ w_star + noise * torch.randn(samples, generator=g, dtype=torch.float64)
    w0 = torch.randn(1, in_features, generator=g, dtype=torch.float64) / math.sqrt(in_features)
    deep = balanced_factors(w0, depth, width, generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices on a shared machine; restored below
    try:
        shallow_losses = [_final_loss([w0], x, y, p, lr, steps) for lr in lrs]
        deep_losses = [_final_loss(deep, x, y, p, lr, steps) for lr in lrs]
    finally:
        torch.set_num_threads(threads)
    best_s, best_d = min(shallow_losses), min(deep_losses)
    return {"log_loss_ratio": math.log(best_d / best_s), "shallow_loss": best_s, "deep_loss": best_d,
            "shallow_lr": float(lrs[shallow_losses.index(best_s)]), "deep_lr": float(lrs[deep_losses.index(best_d)]),
            "initial_loss": float(_lp_loss(w0, x, y, p))}
