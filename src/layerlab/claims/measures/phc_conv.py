"""PHC convolutions' parameter count: about 1/n of the dense convolution's.

Paper: Grassucci, Zhang & Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
Hypercomplex Convolutions", 2021, arXiv:2110.04176: the filter bank ``H = sum_{i=1}^n A_i ⊗ F_i``
(``A_i`` n x n, ``F_i`` (s/n) x (d/n) x k x k) has ``n^3 + s d k^2 / n`` free parameters instead of
``s d k^2``, "1/n free parameters as regards its analog in the real domain".

Per seed the measurement draws a convolution (in and out channels multiples of n in
``[min_channels, max_channels]``, kernel size from ``kernels``) from a ``torch.Generator``, builds
``layerlab.blocks.phc_conv.PHConv`` and ``torch.nn.Conv2d`` with biases (on the meta device: counts
only) and returns::

    ratio = (n^3 + s d k^2 / n + s) / (s d k^2 + s),      error = |n * ratio - 1|

and, as a check of the layer itself, ``conv_error``: the relative difference between the PHC
layer's factored output and ``conv2d`` with ``sum_i torch.kron(A_i, F_i)`` assembled kernel entry
by kernel entry, on a small random input (float64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...blocks.phc_conv import PHC_PAPER, PHConv
from ...errors import ConfigError
from . import register_measure


@register_measure("phc_conv_param_ratio", metric="error", paper=PHC_PAPER)
def phc_conv_param_ratio(seed: int, *, n: int = 4, min_channels: int = 32, max_channels: int = 256,
                         kernels: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"phc_conv_param_ratio: n must be an integer >= 1, got {n!r}")
    lo, hi = -(-min_channels // n), max_channels // n
    if not 1 <= lo <= hi:
        raise ConfigError(f"phc_conv_param_ratio: no multiple of n = {n} in [{min_channels}, {max_channels}]; "
                          f"widen the range")
    kernels = tuple(kernels)
    if not kernels or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in kernels):
        raise ConfigError(f"phc_conv_param_ratio: kernels must be a list of integers >= 1, got {kernels!r}")
    g = torch.Generator().manual_seed(seed)
    cin, cout = (n * int(torch.randint(lo, hi + 1, (1,), generator=g)) for _ in range(2))
    k = kernels[int(torch.randint(len(kernels), (1,), generator=g))]
    with torch.device("meta"):
        phc = PHConv(cin, cout, k, n=n)
        dense = torch.nn.Conv2d(cin, cout, k)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    ratio = count(phc) / count(dense)

    with torch.random.fork_rng(devices=[]):  # the layer's own init must not move the global RNG
        small = PHConv(2 * n, 3 * n, k, n=n, padding=k // 2, dtype=torch.float64)
    with torch.no_grad():
        for p in small.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(2, 2 * n, 6, 6, generator=g, dtype=torch.float64)
    H = torch.stack([torch.stack([sum(torch.kron(small.A[i], small.F[i, :, :, u, v]) for i in range(n))
                                  for v in range(k)], -1) for u in range(k)], -2)
    ref = F.conv2d(x, H, small.bias, padding=k // 2)
    with torch.no_grad():
        conv_error = ((small(x, "factored") - ref).norm() / ref.norm()).item()
    return {"error": abs(n * ratio - 1.0), "ratio": ratio, "in_channels": float(cin), "out_channels": float(cout),
            "kernel_size": float(k), "params_phc": float(count(phc)), "params_dense": float(count(dense)),
            "conv_error": conv_error}
