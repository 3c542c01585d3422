r"""The Variability Collapse Index along training, and its invariance, on digits MLPs.

Paper: Xu & Liu, "Quantifying the Variability Collapse of Neural Networks", ICML 2023,
arXiv:2306.03440: ``VCI = 1 - Tr(Σ_T^† Σ_B) / rank(Σ_B)`` of last-layer features (``lens.variability``)
"is indicative of the variability collapse" and enjoys "invariance under invertible linear
transformations ... that distinguishes it from previous metrics" (abstract).

Both measurements train a ReLU MLP ``64 -> width (x depth) -> 10`` on layerlab's digits train split
(Adam, batch 64, one thread, weights and batches from ``seed``) and read the penultimate features
(the last Linear's input) of the training split.

- ``vci_along_training``: VCI at ``points`` log-spaced steps from initialization to ``steps``;
  ``ratio = VCI_final / VCI_init`` (the metric), ``monotone`` = fraction of consecutive checkpoints
  where VCI did not rise, NC1 ``= Tr(Σ_W Σ_B^†)/K`` at both ends, test-split VCI and accuracy.
- ``vci_invariance``: at the end of training, features ``h`` and ``A h + b`` with ``A = Q_1 S Q_2``
  (Haar ``Q``'s, singular values log-spaced in ``[1, cond]``): ``error = (|ΔVCI| / VCI) / (|ΔNC1| / NC1)``
  (VCI's relative change per unit of NC1's; float64), with both relative changes recorded.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import collapse, variability
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, penultimate, train_mlp
from ._fit import one_thread

PAPER = Paper("Quantifying the Variability Collapse of Neural Networks", 2023, "2306.03440")


def _nc1(h: torch.Tensor, y: torch.Tensor) -> float:
    # NC1 does not depend on the classifier; collapse.metrics asks for one
    return collapse.metrics(h, y, torch.zeros(int(y.max()) + 1, h.shape[1], dtype=h.dtype))["nc1"]


@register_measure("vci_along_training", metric="ratio", paper=PAPER)
def vci_along_training(seed: int, *, width: int = 128, depth: int = 2, steps: int = 2000, lr: float = 1e-3,
                       points: int = 8) -> dict[str, float]:
    check(width, depth, steps, lr)
    if points < 2:
        raise ConfigError(f"vci_along_training: points must be >= 2, got {points}")
    data = digits_splits()
    x, y = data["train"]
    at = sorted({0, *[int(round(steps ** (i / (points - 1)))) for i in range(points)]})
    series: list[float] = []
    nc1: list[float] = []

    def record(step: int, net: torch.nn.Sequential) -> None:
        h = penultimate(net, x)
        series.append(variability.vci(h, y))
        if step in (0, steps):
            nc1.append(_nc1(h, y))

    with one_thread():
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr, at=at, callback=record)
        xt, yt = data["test"]
        test_vci = variability.vci(penultimate(net, xt), yt)
        acc = accuracy(net, xt, yt)
    falls = sum(b <= a for a, b in zip(series[:-1], series[1:])) / (len(series) - 1)
    return {"ratio": series[-1] / series[0], "vci_init": series[0], "vci_final": series[-1], "monotone": falls,
            "nc1_init": nc1[0], "nc1_final": nc1[-1], "vci_test_final": test_vci, "test_accuracy": acc}


@register_measure("vci_invariance", metric="error", paper=PAPER)
def vci_invariance(seed: int, *, width: int = 128, depth: int = 2, steps: int = 2000, lr: float = 1e-3,
                   cond: float = 100.0) -> dict[str, float]:
    check(width, depth, steps, lr)
    if not cond >= 1:
        raise ConfigError(f"vci_invariance: cond must be >= 1, got {cond}")
    x, y = digits_splits()["train"]
    with one_thread():
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr)
        h = penultimate(net, x)
    g = torch.Generator().manual_seed(10_000 + seed)
    d = h.shape[1]
    q1, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    s = torch.logspace(0.0, math.log10(cond), d, dtype=torch.float64)
    a = q1 @ torch.diag(s) @ q2
    moved = h @ a.T + torch.randn(d, generator=g, dtype=torch.float64)
    v0, v1 = variability.vci(h, y), variability.vci(moved, y)
    n0, n1 = _nc1(h, y), _nc1(moved, y)
    dv, dn = abs(v1 - v0) / v0, abs(n1 - n0) / n0
    return {"error": dv / dn if dn > 0 else math.inf, "vci_relative_change": dv, "nc1_relative_change": dn,
            "vci": v0, "nc1": n0}
