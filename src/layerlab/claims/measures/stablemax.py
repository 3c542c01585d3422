"""Softmax Collapse: float32 softmax cross-entropy rounds to exactly 0 on confidently fitted
examples once the logits are scaled up; StableMax cross-entropy does not.

Paper: Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability", 2025
(ICLR 2025), arXiv:2501.04697, Sec. 3-4. Softmax cross-entropy
``-log softmax(z)_t = log(1 + sum_{j != t} exp(z_j - z_t))``: once every ``z_j - z_t`` is below
about ``log(2^-24) ≈ -16.6`` the sum is absorbed by the 1 in float32 and the loss of the example is
exactly 0, so it stops contributing to the gradient (Softmax Collapse, SC). Past the point of
fitting the training set, naive loss minimization scales the logits ``z -> s z`` and drives the
examples into SC. StableMax ``s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0)`` grows linearly, so
``StableMax(z)_t = s(z_t) / sum_j s(z_j)`` stays away from 1 at the same logits.

Per seed the measurement draws logits of a fitted training set (``n`` examples, ``classes``
classes, ``z ~ N(0, 1)`` plus ``margin`` on the target class, so every example is classified
correctly) and scales them by ``s`` on a grid ``1, 2, 4, ... <= max_scale``. At the first scale at
which at least ``collapsed`` of the examples have a float32 softmax cross-entropy of exactly 0,
it returns ``error`` = the fraction of examples whose float32 StableMax cross-entropy is exactly
0 there (the claim: 0), and ``error = 1`` if softmax never collapses on the grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...blocks.activations import log_stablemax
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


@register_measure("softmax_collapse", metric="error",
                  paper=Paper("Grokking at the Edge of Numerical Stability", 2025, "2501.04697"))
def softmax_collapse(seed: int, *, n: int = 2048, classes: int = 97, margin: float = 3.0,
                     max_scale: float = 4096.0, collapsed: float = 0.99) -> dict[str, float]:
    if n < 1 or classes < 2 or not margin > 0 or not max_scale >= 1 or not 0 < collapsed <= 1:
        raise ConfigError(f"softmax_collapse: need n >= 1, classes >= 2, margin > 0, max_scale >= 1, "
                          f"0 < collapsed <= 1; got n={n}, classes={classes}, margin={margin}, "
                          f"max_scale={max_scale}, collapsed={collapsed}")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g)
    t = torch.randint(classes, (n,), generator=g)
    z[torch.arange(n), t] = z.max(-1).values + margin  # a fitted training set: the target is the arg max
    scale = 1.0
    while scale <= max_scale:
        zs = (scale * z).float()
        softmax_zero = (F.cross_entropy(zs, t, reduction="none") == 0).double().mean().item()
        if softmax_zero >= collapsed:
            stable = -log_stablemax(zs).gather(-1, t[:, None]).squeeze(-1)  # float32, as the logits
            return {"error": (stable == 0).double().mean().item(), "scale": scale, "softmax_zero": softmax_zero,
                    "stablemax_min_loss": stable.min().item()}
        scale *= 2.0
    return {"error": 1.0, "scale": float("nan"), "softmax_zero": softmax_zero, "stablemax_min_loss": float("nan")}
