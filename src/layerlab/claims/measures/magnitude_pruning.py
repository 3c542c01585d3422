r"""Magnitude pruning with retraining on a digits MLP: the accuracy lost at ~9x fewer weights.

Paper: Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015, arXiv:1506.02626 (abstract: train, prune the unimportant connections,
retrain the remaining ones; "reduced the number of parameters of AlexNet by a factor of 9x ...
without incurring accuracy loss"; Sec. 3: iterative pruning and retraining; without retraining the
accuracy drops). ``compress.magnitude`` implements the pruning.

One seed: a ReLU MLP ``64 -> width x depth -> 10`` trained on layerlab's digits (Adam ``lr``, batch 64,
``steps``; weights under ``seed``), pruned by ``method`` ("global" or "uniform" magnitude) through the
sparsities of ``schedule``, each step followed by ``finetune_steps`` Adam steps of retraining with the
zeros kept. Reported on the test split: ``acc_dense``, ``acc_pruned`` (after the last step),
``acc_oneshot`` (one-shot pruning of the dense network to the last sparsity, no retraining),
``nonzero`` (measured fraction of nonzero parameters, biases included), and ``error`` = acc_dense -
acc_pruned (the accuracy lost), ``error_oneshot`` = acc_dense - acc_oneshot.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ...compress.magnitude import finetune_masked, magnitude_global, magnitude_uniform
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, train_mlp
from ._fit import one_thread
from .layer_adaptive_pruning import nonzero_fraction


@register_measure("magnitude_pruning_digits", metric="error",
                  paper=Paper("Learning both Weights and Connections for Efficient Neural Networks", 2015, "1506.02626"))
def magnitude_pruning_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 2000, lr: float = 1e-3,
                             method: str = "global", schedule: Sequence[float] = (0.5, 0.8, 0.9),
                             finetune_steps: int = 300, finetune_lr: float = 1e-3) -> dict[str, float]:
    check(width, depth, steps, lr)
    if method not in ("global", "uniform"):
        raise ConfigError(f"method must be 'global' or 'uniform', got {method!r}")
    if not schedule or list(schedule) != sorted(schedule) or not all(0.0 < s < 1.0 for s in schedule):
        raise ConfigError(f"schedule must be increasing sparsities in (0, 1), got {schedule}")
    prune = magnitude_global if method == "global" else magnitude_uniform
    with one_thread():
        data = digits_splits()
        (x, y), (xt, yt) = data["train"], data["test"]
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr, n_classes=10)
        model = net
        for i, level in enumerate(schedule):
            model = finetune_masked(prune(model, level), x, y, steps=finetune_steps, lr=finetune_lr,
                                    generator=torch.Generator().manual_seed(seed + 1000 + i))
        out = {"acc_dense": accuracy(net, xt, yt), "acc_pruned": accuracy(model, xt, yt),
               "acc_oneshot": accuracy(prune(net, schedule[-1]), xt, yt), "nonzero": nonzero_fraction(model)}
    out["error"] = out["acc_dense"] - out["acc_pruned"]
    out["error_oneshot"] = out["acc_dense"] - out["acc_oneshot"]
    return out
