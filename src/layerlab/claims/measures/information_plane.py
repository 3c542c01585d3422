r"""Compression in the information plane: does ``I(X;T)`` of the last hidden layer fall after its peak?

Papers:
    - Shwartz-Ziv & Tishby, "Opening the Black Box of Deep Neural Networks via Information", 2017,
      arXiv:1703.00810 (abstract; Sec. 3): training has two phases, a fast empirical-error
      minimization (``I(T;Y)`` rises) and a much longer *compression* phase in which the layers'
      ``I(X;T)`` decreases; shown for tanh networks 12-10-7-5-4-3-2 on all 4,096 12-bit inputs with
      30 fixed bins. Saxe et al. (ICLR 2018) disputed it: with ReLU no compression appears.
    - Chelombiev, Houghton & O'Donnell, "Adaptive Estimators Show Information Compression in Deep
      Neural Networks", ICLR 2019, arXiv:1902.09037 (abstract): with adaptive (equal-mass) bins
      compression also appears for non-saturating activations such as ReLU (not always).

The measurement trains the 12-10-7-5-4-3-2 network (``activation`` tanh or relu; weights
``N(0, gain / fan_in)``, gain 2 for relu and 1 for tanh, zero biases; float32, one thread) by
full-batch Adam (``lr``, ``steps``) on cross-entropy over a random
``train_fraction`` of the 4,096 inputs ``x in {-1, 1}^12``; the label is ``1[x^T Q x / 12 + v^T x >
median]`` for a teacher ``(Q, v)`` drawn once (``data_seed``, balanced classes; the paper's label is
a spherical-harmonic rule). At ``n_records`` log-spaced steps it bins the last hidden layer (3
units) over all 4,096 inputs (``lens.information.information_plane``; ``method`` fixed: 30 bins over
the tanh range [-1, 1] or the layer's range for relu; adaptive: 30 equal-mass bins) and reports
``ratio = I(X;T)_final / max_t I(X;T)_t`` (the rule's ``error``; < 1 is compression),
``compression`` = peak - final in bits, ``ity_final``, and train/test accuracy.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import information
from ...registry import Paper
from . import register_measure
from ._fit import one_thread

SIZES = (12, 10, 7, 5, 4, 3, 2)


def twelve_bit_task(data_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 4,096 inputs in {-1, 1}^12 and their balanced teacher labels."""
    x = (torch.arange(4096)[:, None] >> torch.arange(12)) & 1
    x = (2 * x - 1).float()
    g = torch.Generator().manual_seed(data_seed)
    Q, v = torch.randn(12, 12, generator=g), torch.randn(12, generator=g)
    score = ((x @ Q) * x).sum(1) / 12 + x @ v
    return x, (score > score.median()).long()


def _net(activation: str, gen: torch.Generator) -> nn.Sequential:
    """12-10-7-5-4-3-2 with weights ``N(0, gain / fan_in)`` (gain 2 for relu, He; 1 for tanh,
    LeCun) and zero biases, drawn from `gen`."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    gain = 2.0 if activation == "relu" else 1.0
    layers: list[nn.Module] = []
    for i, (m, n) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        lin = nn.Linear(m, n)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, m, generator=gen) * math.sqrt(gain / m))
            lin.bias.zero_()
        layers += [lin] + ([act()] if i < len(SIZES) - 2 else [])
    return nn.Sequential(*layers)


def plane_run(seed: int, activation: str, method: str, steps: int, lr: float, train_fraction: float,
              n_records: int, data_seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    x, y = twelve_bit_task(data_seed)
    perm = torch.randperm(4096, generator=gen)
    n_train = int(round(train_fraction * 4096))
    tr, te = perm[:n_train], perm[n_train:]
    net = _net(activation, gen)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    record_at = sorted({int(round(math.exp(u))) for u in torch.linspace(0, math.log(steps), n_records).tolist()} | {0})
    last_hidden = len(net) - 2  # the activation module after the 3-unit layer
    value_range = (-1.0, 1.0) if (activation == "tanh" and method == "fixed") else None
    ixt, ity = [], []
    for step in range(steps + 1):
        if step in record_at:
            with torch.no_grad():
                t = net[: last_hidden + 1](x)
            (a, b), = information.information_plane({"t": t}, y, n_bins=30, method=method,
                                                    value_range=value_range).values()
            ixt.append(a)
            ity.append(b)
        if step == steps:
            break
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[tr]), y[tr]).backward()
        opt.step()
    with torch.no_grad():
        pred = net(x).argmax(1)
    peak = max(ixt)
    ratio = ixt[-1] / peak if peak > 0 else float("nan")  # a layer constant on all inputs all along: no plane
    return {"error": ratio, "ratio": ratio, "compression": peak - ixt[-1], "ixt_peak": peak,
            "ixt_final": ixt[-1], "ity_final": ity[-1], "peak_step": float(record_at[ixt.index(peak)]),
            "train_acc": float((pred[tr] == y[tr]).float().mean()), "test_acc": float((pred[te] == y[te]).float().mean())}


def _check(activation: str, method: str, steps: int, lr: float, train_fraction: float, n_records: int) -> None:
    if activation not in ("tanh", "relu") or method not in information.METHODS:
        raise ConfigError(f"information plane: activation must be tanh or relu and method one of "
                          f"{information.METHODS}; got {activation!r}, {method!r}")
    if steps < 1 or not lr > 0 or not 0 < train_fraction < 1 or n_records < 2:
        raise ConfigError(f"information plane: need steps >= 1, lr > 0, 0 < train_fraction < 1, n_records >= 2; "
                          f"got {steps}, {lr}, {train_fraction}, {n_records}")


@register_measure("information_plane_compression", metric="error",
                  paper=Paper("Opening the Black Box of Deep Neural Networks via Information", 2017, "1703.00810"))
def information_plane_compression(seed: int, *, activation: str = "tanh", method: str = "fixed", steps: int = 1000,
                                  lr: float = 3e-3, train_fraction: float = 0.85, n_records: int = 40,
                                  data_seed: int = 0) -> dict[str, float]:
    _check(activation, method, steps, lr, train_fraction, n_records)
    with one_thread():
        return plane_run(seed, activation, method, steps, lr, train_fraction, n_records, data_seed)


@register_measure("adaptive_information_compression", metric="error",
                  paper=Paper("Adaptive Estimators Show Information Compression in Deep Neural Networks", 2019,
                              "1902.09037"))
def adaptive_information_compression(seed: int, *, activation: str = "relu", method: str = "adaptive",
                                     steps: int = 1000, lr: float = 3e-3, train_fraction: float = 0.85,
                                     n_records: int = 40, data_seed: int = 0) -> dict[str, float]:
    _check(activation, method, steps, lr, train_fraction, n_records)
    with one_thread():
        return plane_run(seed, activation, method, steps, lr, train_fraction, n_records, data_seed)
