r"""AutoSparse on a digits MLP: Gradient Annealing vs straight-through vs zero gradient at ~80% sparsity.

Paper: Kundu et al., "AUTOSPARSE: Towards Automated Sparse Training of Deep Neural Networks", 2023,
arXiv:2304.06941 (abstract: Gradient Annealing, "where gradients of masked weights are scaled down in a
non-linear manner", "provides an elegant trade-off between sparsity and accuracy"; AutoSparse = GA +
learnable-threshold pruning, 80% sparse ResNet50). ``compress.autosparse`` implements it.

One seed: a ReLU MLP ``64 -> width x depth -> 10`` (init under ``seed``) trained sparse from scratch on
digits with learnable per-layer thresholds, ``steps`` Adam steps, for each masked-weight gradient mode
(GA annealed over the first half, straight-through alpha = 1, zero alpha = 0) and each sparsity pressure
in ``lams``. For each mode the test accuracy at ``target`` sparsity is read off linearly between the two
runs whose measured sparsities bracket it (the nearest run if none brackets; ``bracketed_<mode>`` = 0 then).
Reported: ``acc_<mode>``, ``sparsity_<mode>_<lam>``, ``acc_<mode>_<lam>``, and
``deficit`` = max(acc_ste, acc_zero) - acc_ga (GA better than both when negative).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ...compress.autosparse import AUTOSPARSE_2023, train_autosparse
from ...compress.magnitude import sparsity
from ...errors import ConfigError
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, relu_mlp
from ._fit import one_thread


def at_target(points: Sequence[tuple[float, float]], target: float) -> tuple[float, bool]:
    """Linear interpolation of accuracy at sparsity ``target`` from (sparsity, accuracy) points;
    (value, bracketed)."""
    pts = sorted(points)
    for (s0, a0), (s1, a1) in zip(pts, pts[1:]):
        if s0 <= target <= s1:
            return (a0 if s1 == s0 else a0 + (a1 - a0) * (target - s0) / (s1 - s0)), True
    return min(pts, key=lambda p: abs(p[0] - target))[1], False


@register_measure("autosparse_digits", metric="deficit", paper=AUTOSPARSE_2023)
def autosparse_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                      lr_s: float = 1e-2, s_init: float = -4.0, lams: Sequence[float] = (0.04, 0.15, 0.3),
                      target: float = 0.8) -> dict[str, float]:
    check(width, depth, steps, lr)
    if not lams or not 0.0 < target < 1.0:
        raise ConfigError(f"need at least one lam and a target sparsity in (0, 1); got {lams}, {target}")
    out: dict[str, float] = {}
    with one_thread():
        data = digits_splits()
        (x, y), (xt, yt) = data["train"], data["test"]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            init = relu_mlp(64, width, depth, 10)
        for mode in ("ga", "ste", "zero"):
            pts = []
            for lam in lams:
                net = train_autosparse(init, x, y, steps=steps, lr=lr, seed=seed, lam=lam, mode=mode,
                                       s_init=s_init, lr_s=lr_s)
                s, a = sparsity(net), accuracy(net, xt, yt)
                out[f"sparsity_{mode}_{lam}"], out[f"acc_{mode}_{lam}"] = s, a
                pts.append((s, a))
            out[f"acc_{mode}"], ok = at_target(pts, target)
            out[f"bracketed_{mode}"] = float(ok)
    out["deficit"] = max(out["acc_ste"], out["acc_zero"]) - out["acc_ga"]
    return out
