r"""How far the empirical NTK moves during training, as a function of width.

Paper: Jacot, Gabriel & Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural
Networks", 2018, arXiv:1806.07572, Theorem 2: in the NTK parameterization, as the widths grow the
kernel ``Theta(x, x') = sum_p d_p f(x) d_p f(x')`` stays asymptotically constant during training
(for a fixed training time). The rate at finite width, ``||Theta_t - Theta_0||_F / ||Theta_0||_F =
O(1/sqrt(width))``, is the one Lee et al. 2019 (arXiv:1902.06720, Theorem 2.1) prove and measure.

The measurement trains ``lens.theory.TwoLayerReLU`` (``f(x) = (1/sqrt(m)) sum_j a_j relu(w_j^T x)``,
standard-normal parameters, the NTK parameterization) by full-batch gradient descent on
``(1/2N) sum_i (f(x_i) - y_i)^2`` with the same step ``lr`` and number of steps at every width
``m``, on ``n_train`` inputs uniform on the unit sphere in ``in_features`` dimensions and a fixed
smooth target ``y = sqrt(d) x_0 + d x_1 x_2``. It computes the empirical NTK on the training inputs
before and after training (``lens.ntk.empirical``, ``lens.ntk.relative_change``) and fits the
log-log slope of the relative change against the width by least squares. ``excess`` is that slope
minus the bound's ``-1/2`` (``bound_slope``): at most 0 when the kernel settles at least as fast as
``1/sqrt(width)``, and positive when it settles slower (or not at all: slope 0 gives 1/2). The
bound is not tight here: for this network the drift measured close to ``1/width``, the rate Dyer &
Gur-Ari 2019 (arXiv:1909.11304) derive for the kernel's time derivative at large width.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import ntk, theory
from ...registry import Paper
from . import register_measure


def sphere_regression(n: int, d: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs uniform on the unit sphere in ``R^d`` and targets ``sqrt(d) x_0 + d x_1 x_2``
    (each term of unit variance)."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    return x, math.sqrt(d) * x[:, 0] + d * x[:, 1] * x[:, 2]


def loglog_slope(xs: list[float] | torch.Tensor, ys: list[float] | torch.Tensor) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    lx = torch.log(torch.as_tensor(xs, dtype=torch.float64))
    ly = torch.log(torch.as_tensor(ys, dtype=torch.float64))
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def train_gd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> float:
    """Full-batch gradient descent on ``(1/2N) sum (f(x) - y)^2``; returns the final loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(steps):
        loss = 0.5 * (model(x).squeeze(-1) - y).square().mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    with torch.no_grad():
        return float(0.5 * (model(x).squeeze(-1) - y).square().mean())


@register_measure("ntk_width_drift", metric="excess",
                  paper=Paper("Neural Tangent Kernel: Convergence and Generalization in Neural Networks",
                              2018, "1806.07572"))
def ntk_width_drift(seed: int, *, widths: tuple[int, ...] | list[int] = (64, 256, 1024, 4096),
                    in_features: int = 8, n_train: int = 32, lr: float = 1.0, steps: int = 300,
                    bound_slope: float = -0.5) -> dict[str, float]:
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1 or len(set(widths)) != len(widths):
        raise ConfigError(f"ntk_width_drift: need at least two distinct widths >= 1, got {widths}")
    if not lr > 0 or steps < 1 or n_train < 2 or in_features < 3:
        raise ConfigError(f"ntk_width_drift: need lr > 0, steps >= 1, n_train >= 2, in_features >= 3; got "
                          f"lr={lr}, steps={steps}, n_train={n_train}, in_features={in_features}")
    gen = torch.Generator().manual_seed(seed)
    x, y = sphere_regression(n_train, in_features, gen)
    out: dict[str, float] = {}
    changes = []
    for m in widths:
        model = theory.TwoLayerReLU(in_features, m, torch.Generator().manual_seed(seed * 1_000_003 + m),
                                    dtype=torch.float64)
        k0 = ntk.empirical(model, x)
        loss = train_gd(model, x, y, lr, steps)
        change = float(ntk.relative_change(k0, ntk.empirical(model, x)))
        changes.append(change)
        out[f"change@{m}"] = change
        out[f"loss@{m}"] = loss
    slope = loglog_slope(widths, changes)
    out.update({"slope": slope, "excess": slope - bound_slope})
    return out
