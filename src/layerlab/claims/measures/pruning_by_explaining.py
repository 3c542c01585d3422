r"""Pruning by Explaining in a few-shot transfer setting on digits: LRP against Taylor and weight criteria.

Paper: Yeom et al., "Pruning by Explaining: A Novel Criterion for Deep Neural Network Pruning",
Pattern Recognition 2021, arXiv:1912.08881 (abstract: the relevance criterion "clearly outperforms
these previous criteria in the resource-constrained application scenario in which the data of the task
to be transferred to is very scarce and one chooses to refrain from fine-tuning"; their baselines:
weight magnitude, first-order Taylor, gradient). ``compress.lrp_pruning`` implements the criteria.

One seed, a small version of their transfer setting (networks pre-trained on a large source task,
adapted to a target task with scarce data, pruned with a few reference samples, no fine-tuning after
pruning):

1. source: a ReLU MLP ``64 -> width x depth -> 5`` trained on the digits 0-4 of layerlab's training
   split (Adam ``lr``, batch 64, ``steps``; weights under ``seed``);
2. target: digits 5-9 with ``shots`` training examples per class (drawn under ``seed``); the source head
   is replaced by a fresh 5-way layer and the whole network fine-tuned on those examples
   (``transfer_steps`` full-batch Adam steps, ``transfer_lr``);
3. prune: at each rate in ``rates``, remove that fraction of the hidden units by LRP (z+, from the
   true-class logit), Taylor (|sum a dL/da|) and weight (incoming l1) criteria, the scores computed on the
   same few-shot examples (the reference set); no fine-tuning;
4. report test accuracy on digits 5-9: ``acc_<criterion>_<rate>``, the unpruned ``acc_transfer`` (and
   ``acc_source``: the source network on the test digits 0-4, ``train_acc_fewshot``), the
   measured parameter fraction kept ``params_<criterion>_<rate>`` (parameters of the pruned network /
   the unpruned one), and the statistic of the card

       deficit = mean over rates of [ max(acc_taylor, acc_weight) - acc_lrp ]   (< 0: LRP better).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...compress.lrp_pruning import lrp_pruning, taylor_pruning, unit_magnitude_pruning
from ...compress.registry import CompressContext
from ...errors import ConfigError
from ...registry import Paper
from ...tasks.base import Batch
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, train_mlp
from ._fit import one_thread

CRITERIA = ("lrp", "taylor", "weight")


def few_shot(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int], shots: int,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``shots`` examples of each class in ``classes`` (without replacement), labels renumbered 0..C-1."""
    xs, ys = [], []
    for c, label in enumerate(classes):
        idx = (y == label).nonzero().squeeze(1)
        if len(idx) < shots:
            raise ConfigError(f"class {label} has {len(idx)} training examples, fewer than shots={shots}")
        pick = idx[torch.randperm(len(idx), generator=generator)[:shots]]
        xs.append(x[pick])
        ys.append(torch.full((shots,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def subset(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes``, labels renumbered 0..C-1 in that order."""
    keep = torch.isin(y, torch.tensor(list(classes)))
    relabel = {c: i for i, c in enumerate(classes)}
    return x[keep], torch.tensor([relabel[int(v)] for v in y[keep]], dtype=torch.long)


@register_measure("pruning_by_explaining_fewshot", metric="deficit",
                  paper=Paper("Pruning by Explaining: A Novel Criterion for Deep Neural Network Pruning", 2019,
                              "1912.08881"))
def pruning_by_explaining_fewshot(seed: int, *, width: int = 256, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                                  shots: int = 10, transfer_steps: int = 200, transfer_lr: float = 1e-3,
                                  rates: Sequence[float] = (0.5, 0.7, 0.8, 0.9),
                                  rule: str = "zplus") -> dict[str, float]:
    check(width, depth, steps, lr)
    if not rates or not all(0.0 < r < 1.0 for r in rates):
        raise ConfigError(f"rates must be fractions of hidden units in (0, 1), got {rates}")
    if shots < 1 or transfer_steps < 0 or not transfer_lr > 0:
        raise ConfigError(f"need shots >= 1, transfer_steps >= 0, transfer_lr > 0; got {shots}, {transfer_steps}, {transfer_lr}")
    source, target = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
    with one_thread():
        data = digits_splits()
        xs, ys = subset(*data["train"], source)
        net = train_mlp(xs, ys, seed, width=width, depth=depth, steps=steps, lr=lr, n_classes=len(source))
        acc_source = accuracy(net, *subset(*data["test"], source))
        gen = torch.Generator().manual_seed(seed + 7919)
        xf, yf = few_shot(*data["train"], target, shots, gen)
        xt, yt = subset(*data["test"], target)
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            net[-1] = nn.Linear(width, len(target))
        opt = torch.optim.Adam(net.parameters(), lr=transfer_lr)
        net.train()
        for _ in range(transfer_steps):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xf), yf).backward()
            opt.step()
        net.eval()
        ctx = CompressContext(task=None, calibration=Batch(xf, yf), generator=torch.Generator().manual_seed(seed),
                              loss_fn=lambda m, b: nn.functional.cross_entropy(m(b.inputs), b.targets))
        out: dict[str, float] = {"acc_source": acc_source, "acc_transfer": accuracy(net, xt, yt),
                                 "train_acc_fewshot": accuracy(net, xf, yf)}
        n_params = sum(p.numel() for p in net.parameters())
        gaps = []
        for rate in rates:
            pruned = {"lrp": lrp_pruning(net, rate, ctx, rule=rule), "taylor": taylor_pruning(net, rate, ctx),
                      "weight": unit_magnitude_pruning(net, rate, ctx)}
            acc = {}
            for name, model in pruned.items():
                acc[name] = out[f"acc_{name}_{rate:g}"] = accuracy(model, xt, yt)
                out[f"params_{name}_{rate:g}"] = sum(p.numel() for p in model.parameters()) / n_params
            gaps.append(max(acc["taylor"], acc["weight"]) - acc["lrp"])
        out["deficit"] = sum(gaps) / len(gaps)
    return out
