r"""Iterative Feature Merging of a trained ReLU MLP on digits: parameters removed, accuracy kept.

Paper: Chen, Zhou & Yan, "Going Beyond Neural Network Feature Similarity: The Network Feature
Complexity and Its Interpretation Using Category Theory", ICLR 2024, arXiv:2310.06756 (abstract:
"functionally equivalence widely exists among different features learned by the same neural
network and we could reduce the number of parameters of the network without affecting the
performance"; "IFM shows great potential as a data-agnostic model prune method"; no fine-tuning).
``lens.feature_merging``: per hidden layer, features whose incoming weight directions lie within
``β`` merge, their outgoing weights folded (exact for positively rescaled copies).

The measurement trains a ReLU MLP ``64 -> width x depth -> 10`` on layerlab's `digits` (Adam
``lr``, batch 64, ``steps``; weights drawn under ``seed``), runs IFM at each ``β`` of ``betas`` and
keeps the largest whose validation accuracy is within ``max_val_drop`` of the unmerged network's
(no retraining), then reports on the test split: ``reduction`` (fraction of parameters removed),
``acc_drop`` (test accuracy of the network minus that of the merged one), the chosen ``beta``, the
accuracies, and the feature complexity of each hidden layer (``complexity_l<k>``, with
``width`` features before merging); ``error = 1 - reduction``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import feature_merging as fm
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import accuracy, one_thread, train_relu_mlp





@register_measure("feature_merging_digits", metric="error",
                  paper=Paper("Going Beyond Neural Network Feature Similarity: The Network Feature Complexity and Its "
                              "Interpretation Using Category Theory", 2023, "2310.06756"))
def feature_merging_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                           betas: tuple[float, ...] | list[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                           max_val_drop: float = 0.01) -> dict[str, float]:
    betas = sorted(float(b) for b in betas)
    if width < 1 or depth < 1 or steps < 1 or not lr > 0 or not betas or min(betas) < 0 or not max_val_drop >= 0:
        raise ConfigError(f"feature_merging_digits: need width, depth, steps >= 1, lr > 0, betas >= 0 (non-empty), "
                          f"max_val_drop >= 0; got {width}, {depth}, {steps}, {lr}, {betas}, {max_val_drop}")
    task = build_task("digits")
    tr, va, te = task.train_batch(0, torch.Generator()), task.eval_set("val"), task.eval_set("test")
    with one_thread():
        net = train_relu_mlp(tr.inputs.float(), tr.targets, (width,) * depth, seed, steps, lr, n_out=10)
        val0, test0 = accuracy(net, va.inputs, va.targets), accuracy(net, te.inputs, te.targets)
        chosen = None
        for beta in betas:
            small, res = fm.merge_model(net, beta)
            if accuracy(small, va.inputs, va.targets) >= val0 - max_val_drop - 1e-12:
                chosen = (beta, small, res)
        if chosen is None:  # not even the smallest beta keeps validation accuracy: report no merging
            small, res = fm.merge_model(net, 0.0)
            chosen = (0.0, small, res)
        beta, small, res = chosen
        test1 = accuracy(small, te.inputs, te.targets)
    before, after = res.parameters
    reduction = 1.0 - after / before
    out = {"error": 1.0 - reduction, "reduction": reduction, "acc_drop": test0 - test1, "beta": beta,
           "acc_original": test0, "acc_merged": test1, "val_original": val0}
    out.update({f"complexity_l{k + 1}": float(c) for k, c in enumerate(res.complexity)})
    return out
