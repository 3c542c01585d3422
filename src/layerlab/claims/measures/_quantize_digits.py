"""Helpers of the quantization measurements (issue 18): a ReLU MLP trained on digits with a named
optimizer (AdamW, SGD with momentum, Muon), optionally with quantization-aware training, its test
loss and accuracy, and Spearman's rank correlation. One thread is the caller's business."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...methods.muon import Muon, muon_groups
from ...methods.qat_ste import make_qat
from ._digits_mlp import relu_mlp

OPTIMIZERS = ("adamw", "sgd", "muon")


def make_optimizer(net: nn.Sequential, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; SGD with momentum 0.9 (coupled decay); Muon on the hidden matrices with AdamW on the first
    and last Linear and the biases (as Liu et al. 2025 keep input and output layers on AdamW)."""
    if name == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "muon":
        linears = [n for n, m in net.named_children() if isinstance(m, nn.Linear)]
        groups = muon_groups(net, weight_decay=weight_decay, adamw_layers=(linears[0], linears[-1]))
        return Muon(groups, lr=lr)
    raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def train_digits(x: Tensor, y: Tensor, seed: int, *, optimizer: str, lr: float, width: int, depth: int,
                 steps: int, batch: int = 64, weight_decay: float = 0.0, qat_bits: int | None = None) -> nn.Sequential:
    """A ``relu_mlp`` (initialised from ``seed``, the same for every optimizer) trained on cross-entropy
    for ``steps`` minibatches (drawn with replacement from ``seed``), learning rate warmed up over 5%
    of the steps then cosine to 0. ``qat_bits``: quantization-aware training (``methods.qat_ste``).
    The global RNG is forked, not touched. Returned in eval mode."""
    if width < 1 or depth < 1 or steps < 1 or not lr > 0 or batch < 1:
        raise ConfigError(f"need width, depth, steps, batch >= 1 and lr > 0; got {width}, {depth}, {steps}, {batch}, {lr}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = relu_mlp(x.shape[1], width, depth, int(y.max()) + 1)
    if qat_bits is not None:
        make_qat(net, qat_bits)
    opt = make_optimizer(net, optimizer, lr, weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / max(steps - warm, 1))))
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
    net.eval()
    return net


def evaluate(net: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``(x, y)``."""
    with torch.no_grad():
        out = net(x)
        return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def _ranks(v: Sequence[float]) -> Tensor:
    """Ranks 0..n-1, ties given their mean rank."""
    t = torch.tensor(list(v), dtype=torch.float64)
    order = torch.argsort(t, stable=True)
    ranks = torch.empty_like(t)
    ranks[order] = torch.arange(len(t), dtype=torch.float64)
    for value in torch.unique(t):
        same = t == value
        if int(same.sum()) > 1:
            ranks[same] = ranks[same].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the ranks, ties averaged); NaN if either is constant
    or there are fewer than 3 pairs."""
    if len(a) != len(b):
        raise ConfigError(f"spearman needs paired values, got {len(a)} and {len(b)}")
    if len(a) < 3:
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float(ra @ rb) / den if den > 0 else math.nan
