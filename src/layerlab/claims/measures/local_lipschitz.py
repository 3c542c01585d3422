r"""Local Lipschitz bounds by bound propagation against the naive global bound.

Paper: Shi, Wang, Zhang, Kolter & Hsieh, "Efficiently Computing Local Lipschitz Constants of
Neural Networks via Bound Propagation", NeurIPS 2022, arXiv:2210.07394 (abstract: "on larger
models, our method efficiently produces tighter results than existing relaxed or naive methods";
Sec. 5: comparison with the naive bound ``Π_k ||W_k||``). The local ``l_inf`` Lipschitz constant
on ``B = {||x - x_0||_inf <= eps}`` is ``sup_{x in B, J in ∂f(x)} ||J||_inf``; ``lens.lipschitz``
bounds it by interval propagation through the Clarke-Jacobian chain rule (the relaxation the paper
generalizes).

The measurement draws a ReLU MLP ``in_features -> width -> ... -> 1`` (``depth`` hidden layers,
weights ``N(0, 2/fan_in)``, biases ``N(0, bias_std^2)``) and ``n_points`` centres ``x_0 ~ N(0, I)``
and reports, averaged over the centres:
    - ``ratio`` = local bound / global bound ``Π_k ||W_k||_inf`` (the rule's ``error``);
    - ``tightness`` = sampled lower bound / local bound (1 = the bound is the exact constant);
    - ``unstable`` = the fraction of hidden units whose pre-activation interval contains 0.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import lipschitz
from ...registry import Paper
from . import register_measure


@register_measure("local_lipschitz_vs_global", metric="error",
                  paper=Paper("Efficiently Computing Local Lipschitz Constants of Neural Networks via Bound Propagation",
                              2022, "2210.07394"))
def local_lipschitz_vs_global(seed: int, *, in_features: int = 10, width: int = 32, depth: int = 2,
                              eps: float = 0.1, bias_std: float = 0.1, n_points: int = 16,
                              n_samples: int = 4000) -> dict[str, float]:
    if min(in_features, width, depth, n_points) < 1 or not eps > 0 or not bias_std >= 0 or n_samples < 2:
        raise ConfigError(f"local_lipschitz_vs_global: need in_features, width, depth, n_points >= 1, eps > 0, "
                          f"bias_std >= 0, n_samples >= 2; got {in_features}, {width}, {depth}, {n_points}, "
                          f"{eps}, {bias_std}, {n_samples}")
    gen = torch.Generator().manual_seed(seed)
    sizes = [in_features] + [width] * depth + [1]
    ws = [torch.randn(n, m, generator=gen, dtype=torch.float64) * (2.0 / m) ** 0.5 for m, n in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(n, generator=gen, dtype=torch.float64) * bias_std for n in sizes[1:]]
    naive = lipschitz.global_bound(ws)
    ratio, tight, unstable = [], [], []
    for x0 in torch.randn(n_points, in_features, generator=gen, dtype=torch.float64):
        bound = lipschitz.local_lipschitz_bound(ws, bs, x0, eps)
        lower = lipschitz.sampled_lower_bound(ws, bs, x0, eps, n_samples=n_samples, generator=gen)
        pre = lipschitz.preactivation_bounds(ws, bs, x0, eps)
        ratio.append(bound / naive)
        tight.append(lower / bound)
        unstable.append(float(sum(((l < 0) & (u > 0)).sum() for l, u in pre)) / (width * depth))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {"error": mean(ratio), "ratio": mean(ratio), "tightness": mean(tight), "unstable": mean(unstable),
            "global": naive}
