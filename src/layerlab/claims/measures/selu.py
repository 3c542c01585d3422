"""SELU's fixed point, measured in a deep random network.

Paper: Klambauer, Unterthiner, Mayr & Hochreiter, "Self-Normalizing Neural Networks", 2017,
arXiv:1706.02515, Theorem 1: with ``selu`` (alpha_01, lambda_01) and weights of zero mean and
``sum_i w_i^2 = 1`` (omega = 0, tau = 1), the moment map ``g: (mu, nu) -> (mu~, nu~)`` of one layer
has a stable, attracting fixed point at ``(mu, nu) = (0, 1)``.

The measurement propagates inputs of mean ``mean0`` and variance ``var0`` through ``depth`` layers
``x <- selu(W x)`` with LeCun-normal ``W`` (``w ~ N(0, 1/width)``, the paper's omega ~ 0, tau ~ 1 in
expectation) and returns the distance of the last layer's moments from the fixed point,
``error = max(|mean|, |var - 1|)`` over all units and examples, beside the start's distance. A finite
width adds fluctuations of order ``1/sqrt(width)`` around the mean-field values.
"""
from __future__ import annotations

import torch

from ...blocks.activations import lecun_normal_, selu
from ...registry import Paper
from . import register_measure


@register_measure("selu_fixed_point", metric="error",
                  paper=Paper("Self-Normalizing Neural Networks", 2017, "1706.02515"))
def selu_fixed_point(seed: int, *, width: int = 512, depth: int = 32, batch: int = 1024,
                     mean0: float = 0.1, var0: float = 1.5) -> dict[str, float]:
    if width < 1 or depth < 1 or batch < 2 or var0 <= 0:
        from ...errors import ConfigError

        raise ConfigError(f"selu_fixed_point: need width >= 1, depth >= 1, batch >= 2, var0 > 0; "
                          f"got width={width}, depth={depth}, batch={batch}, var0={var0}")
    g = torch.Generator().manual_seed(seed)
    x = mean0 + var0**0.5 * torch.randn(batch, width, generator=g, dtype=torch.float64)
    start = max(abs(x.mean().item()), abs(x.var().item() - 1))
    w = torch.empty(width, width, dtype=torch.float64)
    for _ in range(depth):
        x = selu(x @ lecun_normal_(w, generator=g).T)
    mean, var = x.mean().item(), x.var().item()
    return {"error": max(abs(mean), abs(var - 1)), "mean": mean, "var": var, "start_error": start}
