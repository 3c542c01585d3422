r"""Full-batch gradient descent operates at the edge of stability.

Paper: Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs
at the Edge of Stability", ICLR 2021, arXiv:2103.00065 (abstract; Sec. 3). Gradient descent with
step :math:`\eta` on a quadratic is stable iff the sharpness :math:`\lambda_{\max}(H) < 2/\eta`.
On neural networks, full-batch GD shows *progressive sharpening* (``λ_max`` rises) until
``λ_max`` reaches ``2/η``; it then *hovers* just above ``2/η`` (the edge of stability) while the
training loss keeps falling over long times, non-monotonically.

The measurement trains a tanh MLP (``in -> width -> width -> 10``, PyTorch's default
initialization from the seed) in float64 by full-batch GD on the first ``n_train`` training
digits of ``tasks.Digits`` (8x8 pixels in [0, 1], centered by the subset's mean), on the square
loss of Cohen et al., :math:`L = \frac{1}{2n}\sum_i \lVert f(x_i) - e_{y_i}\rVert^2` (one-hot
targets). The step is set from the sharpness at initialization, ``η = start_ratio · 2/λ_max(θ_0)``
(``start_ratio < 1``: GD starts stable, so reaching the edge needs sharpening). Every
``every`` steps it measures ``λ_max`` of the full training loss by Lanczos
(``lens.hessian``, warm-started from the last top eigenvector) and summarizes the series with
``lens.curvature.edge_of_stability_summary``: the ratio ``η λ_max / 2`` and its median over the
last ``tail`` fraction of the run. ``edge_error = |tail_median - 1|``: 0 when the sharpness
hovers exactly at ``2/η``. Also returned: the initial and largest ratios, the step at which the
ratio first reached 0.9, the final loss and the fraction of steps at which the loss went up (the
non-monotone decrease of the edge of stability).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import curvature, hessian
from ...registry import Paper
from ...tasks.digits import Digits
from . import register_measure

Batch = tuple[torch.Tensor, torch.Tensor]


def square_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``(1/2n) Σ_i ||f(x_i) - y_i||²`` for one-hot (or real) targets ``y`` of the outputs' shape."""
    x, y = batch
    return 0.5 * (model(x) - y).square().sum(-1).mean()


def digits_subset(n_train: int) -> Batch:
    """The first ``n_train`` training digits of ``Digits(data_seed=0)``, pixels centered by the
    subset's mean, one-hot targets; float64."""
    b = Digits().train_batch(0, torch.Generator())
    if not 10 <= n_train <= len(b):
        raise ConfigError(f"n_train must lie in 10..{len(b)} (the digits training split), got {n_train}")
    x = b.inputs[:n_train].double()
    return x - x.mean(0), nn.functional.one_hot(b.targets[:n_train], 10).double()


def tanh_mlp(in_features: int, width: int, seed: int) -> nn.Sequential:
    """``in -> width -> width -> 10`` with tanh, PyTorch's default initialization from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                             nn.Linear(width, 10)).double()


class SharpnessTracker:
    """``λ_max`` of the loss on ``data`` by Lanczos, each call warm-started from the last top vector."""

    def __init__(self, model: nn.Module, data: Batch, seed: int, tol: float = 1e-6) -> None:
        self.op = hessian.HessianOperator(model, square_loss, [data])
        self.gen = torch.Generator().manual_seed(seed)
        self.tol, self.start, self.products = tol, None, 0

    def __call__(self) -> float:
        found = self.op.top_eigenpairs(1, max_iter=200, tol=self.tol, generator=self.gen, start_vector=self.start)
        self.start, self.products = found.vectors[:, 0], self.products + found.products
        return float(found.values[0])


@register_measure("edge_of_stability", metric="edge_error",
                  paper=Paper("Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability",
                              2021, "2103.00065"))
def edge_of_stability(seed: int, *, n_train: int = 256, width: int = 32, start_ratio: float = 0.4,
                      steps: int = 3000, every: int = 50, tail: float = 0.5) -> dict[str, float]:
    if width < 1 or steps < 2 * every or every < 1 or not 0 < start_ratio < 1 or not 0 < tail <= 1:
        raise ConfigError("edge_of_stability: need width >= 1, every >= 1, steps >= 2 * every, 0 < start_ratio < 1 "
                          f"and 0 < tail <= 1; got {width}, {every}, {steps}, {start_ratio}, {tail}")
    data = digits_subset(n_train)
    model = tanh_mlp(data[0].shape[1], width, seed)
    params = list(model.parameters())
    track = SharpnessTracker(model, data, seed)
    lam0 = track()
    lr = start_ratio * 2.0 / lam0
    record_steps, sharp = [0], [lam0]
    rises, prev = 0, math.inf
    for t in range(1, steps + 1):
        loss = square_loss(model, data)
        value = loss.item()
        if not math.isfinite(value):
            return {"edge_error": math.nan, "lr": lr, "diverged_at": float(t)}
        rises += value > prev
        prev = value
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        if t % every == 0:
            record_steps.append(t)
            sharp.append(track())
    with torch.no_grad():
        final = float(square_loss(model, data))
    s = curvature.edge_of_stability_summary(record_steps, sharp, lr, tail=tail)
    return {"edge_error": abs(s.tail_median - 1.0), "tail_median": s.tail_median, "initial_ratio": s.initial_ratio,
            "max_ratio": s.max_ratio, "reach_step": math.nan if s.reach_step is None else float(s.reach_step),
            "sharpened": float(s.sharpened), "lr": lr, "sharpness_init": lam0, "final_loss": final,
            "loss_rise_fraction": rises / steps, "hvp_products": float(track.products)}
