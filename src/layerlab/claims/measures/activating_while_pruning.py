r"""Activating-while-Pruning (AP) on a digits MLP: accuracy with vs without AP at equal sparsity.

Paper: Liu, Ghosh, Tan & Motani, "AP: Selective Activation for De-sparsifying Pruned Neural Networks",
2022, arXiv:2212.06145 (abstract: the dynamic dead neuron rate (DNR) "is not beneficial for the pruned
network"; AP, in tandem with a pruning method, reduces it by selective activation of nodes and
"improves the performance by 3% - 4%" on CIFAR-10/100). ``compress.activating_while_pruning``
implements it (selection rule: the module docstring says what could not be verified).

One seed: a ReLU MLP ``64 -> width x depth -> 10`` trained on digits (Adam ``lr``, batch 64, ``steps``),
then two runs from the same dense weights and the same minibatch stream: iterative global magnitude
pruning through ``schedule``, ``finetune_steps`` Adam steps after each step with zeros kept, without AP
(plain) and with AP (``fraction`` of each layer's still-ReLU units, the most dead, switched to SiLU
after each pruning step). Reported on the test split: ``acc_plain_<s>``, ``acc_ap_<s>``, DNR of the
plain run ``dnr_plain_<s>`` (training split) at each sparsity s of ``levels``; ``deficit`` = mean over
``levels`` of (acc_plain - acc_ap) (AP helps when negative); ``nonzero`` (measured, AP run).
"""
from __future__ import annotations

from collections.abc import Sequence

from ...compress.activating_while_pruning import AP_2022, activate_while_pruning, dead_neuron_rate, selective
from ...errors import ConfigError
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, train_mlp
from ._fit import one_thread
from .layer_adaptive_pruning import nonzero_fraction


@register_measure("activating_while_pruning_digits", metric="deficit", paper=AP_2022)
def activating_while_pruning_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 1500,
                                    lr: float = 1e-3, schedule: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.98),
                                    levels: Sequence[float] = (0.8, 0.9, 0.95, 0.98), finetune_steps: int = 200,
                                    finetune_lr: float = 1e-3, fraction: float = 0.1) -> dict[str, float]:
    check(width, depth, steps, lr)
    if not levels or not set(levels) <= set(schedule):
        raise ConfigError(f"levels {levels} must be sparsities of the schedule {schedule}")
    with one_thread():
        data = digits_splits()
        (x, y), (xt, yt) = data["train"], data["test"]
        dense = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr, n_classes=10)
        out: dict[str, float] = {"acc_dense": accuracy(dense, xt, yt)}
        for tag, ap in (("plain", False), ("ap", True)):
            net = selective(dense)
            for i, level in enumerate(schedule):
                net = activate_while_pruning(net, x, y, schedule=[level], finetune_steps=finetune_steps,
                                             lr=finetune_lr, seed=seed + 1000 + i, fraction=fraction, ap=ap)
                if level in levels:
                    out[f"acc_{tag}_{level}"] = accuracy(net, xt, yt)
                    out[f"dnr_{tag}_{level}"] = dead_neuron_rate(net, x)
        out["nonzero"] = nonzero_fraction(net)
    out["deficit"] = sum(out[f"acc_plain_{s}"] - out[f"acc_ap_{s}"] for s in levels) / len(levels)
    return out
