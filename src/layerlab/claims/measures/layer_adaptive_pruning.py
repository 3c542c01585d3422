r"""Layer-adaptive pruning by DP against uniform and global magnitude pruning on a digits MLP.

Paper: Xu et al., "Efficient Joint Optimization of Layer-Adaptive Weight Pruning in Deep Neural
Networks", ICCV 2023, arXiv:2308.10438 (abstract: jointly minimising the output distortion under a
target pruning ratio, with per-layer ratios from a DP, "outperforming others" in top-1 accuracy; the
baselines of their tables include uniform and global magnitude pruning). ``compress.layer_adaptive``
implements it; the baselines are ``compress.magnitude`` (Han et al. 2015).

One seed: a ReLU MLP ``64 -> width x depth -> 10`` is trained on layerlab's digits (Adam ``lr``, batch
64, ``steps``; weights drawn under ``seed``). Each method then prunes iteratively, as in the paper's
main protocol (the authors' code prunes a fraction of the remaining weights per iteration and
fine-tunes in between): through the sparsities of ``schedule``, each step pruning the previous step's
fine-tuned model (the DP's distortion curves measured on ``calibration`` training inputs, ``grid`` + 1
counts per layer, earlier zeros kept) and fine-tuning it for ``finetune_steps`` Adam steps
(``finetune_lr``) with its zeros kept (``magnitude.masks_of`` / ``apply_masks`` after every step).
Reported on the test split at each sparsity of ``levels`` (a subset of ``schedule``):
``acc_<method>_<level>`` after fine-tuning, ``nonzero_<method>_<level>`` (the measured fraction of
nonzero weights and biases of the whole network), ``oneshot_<method>_<level>`` (one-shot pruning of
the dense model, no fine-tuning), the dense accuracy, and the statistics of the card:

    deficit  = mean over levels of [ max(acc_uniform, acc_global) - acc_dp ]   (iterative, fine-tuned)
    deficit_oneshot = the same for one-shot pruning without fine-tuning.

``deficit < 0``: the DP is better than the better of the two baselines.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...compress.layer_adaptive import layer_adaptive_dp
from ...compress.magnitude import finetune_masked, magnitude_global, magnitude_uniform
from ...compress.registry import CompressContext
from ...errors import ConfigError
from ...registry import Paper
from ...tasks.base import Batch
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, train_mlp
from ._fit import one_thread

METHODS = ("dp", "uniform", "global")


def nonzero_fraction(net: nn.Module) -> float:
    """Nonzero entries among all parameters of ``net`` (measured on the tensors)."""
    total = sum(p.numel() for p in net.parameters())
    return sum(int((p != 0).sum()) for p in net.parameters()) / total


@register_measure("layer_adaptive_pruning_digits", metric="deficit",
                  paper=Paper("Efficient Joint Optimization of Layer-Adaptive Weight Pruning in Deep Neural Networks",
                              2023, "2308.10438"))
def layer_adaptive_pruning_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 2000, lr: float = 1e-3,
                                  schedule: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                                  levels: Sequence[float] = (0.8, 0.9, 0.95), finetune_steps: int = 300,
                                  finetune_lr: float = 1e-3, grid: int = 20, calibration: int = 1024,
                                  distortion: str = "mean") -> dict[str, float]:
    check(width, depth, steps, lr)
    if not schedule or list(schedule) != sorted(schedule) or not all(0.0 < s < 1.0 for s in schedule):
        raise ConfigError(f"schedule must be increasing sparsities in (0, 1), got {schedule}")
    if not levels or not set(levels) <= set(schedule):
        raise ConfigError(f"levels {levels} must be sparsities of the schedule {schedule}")
    if finetune_steps < 0 or not finetune_lr > 0:
        raise ConfigError(f"need finetune_steps >= 0 and finetune_lr > 0, got {finetune_steps}, {finetune_lr}")
    with one_thread():
        data = digits_splits()
        (x, y), (xt, yt) = data["train"], data["test"]
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr, n_classes=10)
        ctx = CompressContext(task=None, calibration=Batch(x[:calibration], y[:calibration]),
                              generator=torch.Generator().manual_seed(seed), loss_fn=lambda m, b: torch.zeros(()))

        def prune(method: str, model: nn.Module, level: float) -> nn.Module:
            if method == "dp":
                return layer_adaptive_dp(model, level, ctx, grid=grid, distortion=distortion, examples=calibration)
            return (magnitude_uniform if method == "uniform" else magnitude_global)(model, level, ctx)

        out: dict[str, float] = {"acc_dense": accuracy(net, xt, yt)}
        for method in METHODS:
            model = net
            for i, level in enumerate(schedule):
                model = finetune_masked(prune(method, model, level), x, y, steps=finetune_steps, lr=finetune_lr,
                                        generator=torch.Generator().manual_seed(seed + 1000 + i))
                if level in levels:
                    out[f"acc_{method}_{level:g}"] = accuracy(model, xt, yt)
                    out[f"nonzero_{method}_{level:g}"] = nonzero_fraction(model)
            for level in levels:
                out[f"oneshot_{method}_{level:g}"] = accuracy(prune(method, net, level), xt, yt)

        def deficit(prefix: str) -> float:
            gaps = [max(out[f"{prefix}_uniform_{s:g}"], out[f"{prefix}_global_{s:g}"]) - out[f"{prefix}_dp_{s:g}"]
                    for s in levels]
            return sum(gaps) / len(gaps)

        out["deficit"] = deficit("acc")
        out["deficit_oneshot"] = deficit("oneshot")
    return out
