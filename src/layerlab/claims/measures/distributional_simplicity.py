r"""Distributional simplicity bias: accuracy on Gaussian clones of digits along training.

Paper: Refinetti, Ingrosso & Goldt, "Neural networks trained with SGD learn distributions of
increasing complexity", ICML 2023, arXiv:2211.11567 (abstract: networks trained with SGD
"initially classify their inputs using lower-order input statistics, like mean and covariance, and
exploit higher-order statistics only later during training"; Sec. 4, accuracy on Gaussian clones of
the test set along training).

The measurement trains a ReLU MLP ``64 -> width -> width -> 10`` (PyTorch's default
initialization drawn under ``seed``) on layerlab's `digits` train split by plain SGD (``lr``, batch
32, ``steps``, one thread), and at ``n_records`` log-spaced steps measures the accuracy on the test
split (``real``) and on its Gaussian clone (``lens.simplicity.gaussian_clones``: per class the
mean and covariance of the training split, as many samples as the test split has; fewer than
64 per class, so drawn plainly, not with exact sample moments). Early = the first record where
``real`` reaches halfway from chance (0.1) to its final value. It reports ``early_ratio`` = clone / real accuracy there, ``final_ratio`` at the end,
``drop = early_ratio - final_ratio`` (positive: the clone accuracy falls behind as training goes
on) and ``error = 1 - drop``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import simplicity
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import one_thread


@register_measure("distributional_simplicity", metric="error",
                  paper=Paper("Neural networks trained with SGD learn distributions of increasing complexity", 2022,
                              "2211.11567"))
def distributional_simplicity(seed: int, *, width: int = 256, lr: float = 0.05, steps: int = 2000,
                              n_records: int = 30) -> dict[str, float]:
    if width < 1 or not lr > 0 or steps < 2 or n_records < 2:
        raise ConfigError(f"distributional_simplicity: need width >= 1, lr > 0, steps >= 2, n_records >= 2; got "
                          f"{width}, {lr}, {steps}, {n_records}")
    task = build_task("digits")
    train, test = task.train_batch(0, torch.Generator()), task.eval_set("test")
    xtr, ytr, xte, yte = train.inputs.float(), train.targets, test.inputs.float(), test.targets
    gen = torch.Generator().manual_seed(seed)
    counts = torch.bincount(yte, minlength=10)
    clones = [simplicity.gaussian_clones(xtr[ytr == c], ytr[ytr == c], generator=gen, n_per_class=int(counts[c]),
                                         exact=False) for c in range(10)]
    xcl, ycl = torch.cat([c[0] for c in clones]).float(), torch.cat([c[1] for c in clones])
    with one_thread(), torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        record = sorted({int(round(math.exp(u))) for u in torch.linspace(0, math.log(steps), n_records).tolist()})
        real, clone = [], []
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(xtr), (32,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
            if step in record:
                with torch.no_grad():
                    real.append(float((net(xte).argmax(1) == yte).float().mean()))
                    clone.append(float((net(xcl).argmax(1) == ycl).float().mean()))
    half = 0.1 + 0.5 * (real[-1] - 0.1)
    early = next(i for i, r in enumerate(real) if r >= half)
    early_ratio, final_ratio = clone[early] / real[early], clone[-1] / real[-1]
    drop = early_ratio - final_ratio
    return {"error": 1.0 - drop, "drop": drop, "early_ratio": early_ratio, "final_ratio": final_ratio,
            "early_step": float(record[early]), "real_final": real[-1], "clone_final": clone[-1],
            "clone_peak": max(clone)}
