"""WARP: the weight-space linear recurrence computed in convolutional (parallel) mode equals the
recurrent mode.

Paper: Nzoyem, Keshtmand, Tsayem, Barton, Deakin, "Weight-Space Linear Recurrent Neural Networks",
2025, arXiv:2506.01153: the hidden state is the flattened weights of a root network,
``theta_t = A theta_{t-1} + B (x_t - x_{t-1})``, "linear recurrence" decoded by ``y_t = theta_t(tau)``;
being linear in ``theta``, it unrolls to ``theta_t = A^{t+1} theta_init + sum_{i<=t} A^{t-i} B dx_i``
(the convolutional mode used for training) and runs token by token at inference.

Per seed: a ``warp`` mixer (width ``d_model``, root width ``hidden``) with ``A = rho Q`` (``Q`` a random
orthogonal matrix, ``rho = 0.98``) and ``B``, ``theta_init`` normal, drawn from a ``torch.Generator``;
a random input of length ``length``; float64::

    error = max(||theta_conv - theta_rec|| / ||theta_rec||, ||y_conv - y_rec|| / ||y_rec||)

also reported: the state size per sequence (D_theta + D + 1) and D_theta.
"""
from __future__ import annotations

import torch

from ...blocks.mixers.warp import WARP
from ...errors import ConfigError
from ...registry import get
from . import register_measure


@register_measure("warp_conv_equals_recurrence", metric="error", paper=get("mixer", "warp").paper)
def warp_conv_equals_recurrence(seed: int, *, d_model: int = 8, hidden: int = 8, length: int = 128) -> dict[str, float]:
    if int(d_model) < 1 or int(hidden) < 1 or int(length) < 1:
        raise ConfigError(f"warp_conv_equals_recurrence: d_model, hidden, length must be >= 1; got {d_model}, "
                          f"{hidden}, {length}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        block = WARP(int(d_model), hidden=int(hidden), tau_scale=float(length), dtype=torch.float64)
    n = block.d_theta
    with torch.no_grad():
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        block.A.copy_(0.98 * Q)
        block.B.copy_(torch.randn(n, int(d_model), generator=g, dtype=torch.float64) / int(d_model) ** 0.5)
        block.theta_init.copy_(torch.randn(n, generator=g, dtype=torch.float64) / n ** 0.5)
        x = torch.randn(2, int(length), int(d_model), generator=g, dtype=torch.float64)
        theta_conv, y_conv = block.weights(x), block(x, "conv")
        state, thetas, ys = block.init_state(2), [], []
        for t in range(int(length)):
            y, state = block.step(x[:, t], state)
            thetas.append(state[0])
            ys.append(y)
        theta_rec, y_rec = torch.stack(thetas, 1), torch.stack(ys, 1)
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    return {"error": max(rel(theta_conv, theta_rec), rel(y_conv, y_rec)), "theta_error": rel(theta_conv, theta_rec),
            "d_theta": float(n), "state_size": float(block.state_size)}
