r"""Sketched backpropagation through the Linear layers of a digits MLP: quality lost, memory saved.

Paper: Bershatsky et al., "Memory-Efficient Backpropagation through Large Linear Layers", 2022,
arXiv:2201.13195 (abstract: randomized matrix multiplication in the backward pass of linear layers
"require[s] less memory with a moderate decrease of the test accuracy"). ``blocks.sketched_linear``:
the weight gradient ``G^T X`` is estimated as ``(S^T G)^T (S^T X)``, ``E[S S^T] = I``, keeping the
sketch ``S^T X`` of ``ceil(rho B)`` rows instead of the ``B`` rows of ``X``.

The measurement trains a GELU MLP ``64 -> width x depth -> 10`` on layerlab's `digits` (Adam,
batch ``batch``, ``steps``) with exact Linear layers and, from the same initialization and the same
minibatches, with every Linear sketched at each ratio of ``ratios`` (``sketch``); for every variant
the learning rate of ``lrs`` with the best validation accuracy is kept (ties: the smaller). GELU
because it keeps its *input* for its backward pass, so the Linear's copy of its output is the only
one and the sketch really removes it (after a ReLU it would not: see the block's docstring).

Reported, on the test split: ``acc_exact``, ``acc_r<rho>`` per ratio, ``acc_drop_r<rho>`` =
``acc_exact - acc_r<rho>``, ``acc_drop`` (that of ``card_ratio``), and the memory measured on one
training step of the trained model with ``train.footprint.saved_activation_bytes`` (parameters
excluded): ``saved_bytes_exact``, ``saved_ratio_r<rho>`` (sketched bytes / exact bytes), the
chosen learning rates ``lr_exact``, ``lr_r<rho>``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ...blocks.sketched_linear import SKETCHES, sketch_linears
from ...errors import ConfigError
from ...registry import Paper
from ...train.footprint import saved_activation_bytes
from . import register_measure
from ._digits_mlp import accuracy, digits_splits
from ._fit import one_thread


def gelu_mlp(d_in: int, width: int, depth: int, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, lr: float, batch: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)  # the same minibatches for every variant
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def step_saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of one training step (parameters excluded)."""
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    loss, saved = saved_activation_bytes(lambda: nn.functional.cross_entropy(model(x), y), exclude=params)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return saved


@register_measure("sketched_backprop_digits", metric="acc_drop",
                  paper=Paper("Memory-Efficient Backpropagation through Large Linear Layers", 2022, "2201.13195"))
def sketched_backprop_digits(seed: int, *, width: int = 256, depth: int = 2, steps: int = 1000, batch: int = 64,
                             lrs: tuple[float, ...] | list[float] = (1e-3, 3e-3),
                             ratios: tuple[float, ...] | list[float] = (0.5, 0.25, 0.1), card_ratio: float = 0.5,
                             sketch: str = "gaussian") -> dict[str, float]:
    ratios = [float(r) for r in ratios]
    lrs = sorted(float(v) for v in lrs)
    if width < 1 or depth < 1 or steps < 1 or batch < 1 or not lrs or min(lrs) <= 0:
        raise ConfigError(f"sketched_backprop_digits: need width, depth, steps, batch >= 1 and lrs > 0 (non-empty); "
                          f"got {width}, {depth}, {steps}, {batch}, {lrs}")
    if not ratios or not all(0 < r <= 1 for r in ratios) or float(card_ratio) not in ratios:
        raise ConfigError(f"sketched_backprop_digits: ratios must be in (0, 1] and include card_ratio; "
                          f"got ratios {ratios}, card_ratio {card_ratio}")
    if sketch not in SKETCHES:
        raise ConfigError(f"sketched_backprop_digits: unknown sketch {sketch!r}; use one of {', '.join(SKETCHES)}")
    data = digits_splits()
    (x, y), (xv, yv), (xt, yt) = data["train"], data["val"], data["test"]
    with one_thread(), torch.random.fork_rng():
        torch.manual_seed(seed)
        init = gelu_mlp(x.shape[1], width, depth, int(y.max()) + 1)
        out: dict[str, float] = {}
        probe = torch.randint(0, len(x), (batch,), generator=torch.Generator().manual_seed(seed))
        for label, ratio in [("exact", None)] + [(f"r{r:g}", r) for r in ratios]:
            best = None
            for lr in lrs:
                model = init if ratio is None else sketch_linears(init, sketch_ratio=ratio, sketch=sketch, seed=seed)
                model = _fit(copy.deepcopy(model), x, y, seed, steps, lr, batch)
                val = accuracy(model, xv, yv)
                if best is None or val > best[0]:
                    best = (val, lr, model)
            val, lr, model = best
            out[f"acc_{label}"] = accuracy(model, xt, yt)
            out[f"val_{label}"] = val
            out[f"lr_{label}"] = lr
            out[f"saved_bytes_{label}"] = float(step_saved_bytes(model, x[probe], y[probe]))
    for r in ratios:
        out[f"acc_drop_r{r:g}"] = out["acc_exact"] - out[f"acc_r{r:g}"]
        out[f"saved_ratio_r{r:g}"] = out[f"saved_bytes_r{r:g}"] / out["saved_bytes_exact"]
    out["acc_drop"] = out[f"acc_drop_r{float(card_ratio):g}"]
    return out
