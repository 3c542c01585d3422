"""MIP against the standard hypernetwork formulation: the loss reached on digits after a fixed budget.

Paper: Gonzalez Ortiz, Guttag & Dalca, "Magnitude Invariant Parametrizations Improve Hypernetwork
Learning", 2023, arXiv:2304.07645 (abstract: MIP "consistently stabilizes training and achieves
faster convergence").

Per seed, two hypernetworks (``layerlab.models.hypernetwork.Hypernetwork``, k = 1, hidden 64,
primary ReLU MLP 64 -> ``width`` -> 10) are trained from the same seed with Adam (``lr``) for
``steps`` minibatches of 64 digits, each step with its own ``γ ~ U(0, 1)``, on the γ-conditioned loss::

    L(γ) = CE(f(x; θ(γ)), y) + γ · reg · mean(θ(γ)²)

Reported: each one's test loss ``L(γ)`` averaged over ``γ ∈ {0, 0.25, 0.5, 0.75, 1}``, and
``excess = loss_mip - loss_standard`` (< 0: MIP got further in the same budget).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...models.hypernetwork import Hypernetwork
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits

GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _loss(h: Hypernetwork, x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, reg: float) -> torch.Tensor:
    theta = torch.cat([w.flatten() for w in h.weights(gamma)])
    return nn.functional.cross_entropy(h(x, gamma), y) + gamma[0] * reg * (theta * theta).mean()


def _train(mip: bool, seed: int, x, y, *, width: int, steps: int, lr: float, reg: float) -> Hypernetwork:
    torch.manual_seed(seed)
    h = Hypernetwork(1, x.shape[1], width, 10, mip=mip)
    opt = torch.optim.Adam(h.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        gamma = torch.rand(1, generator=gen)
        opt.zero_grad()
        _loss(h, x[idx], y[idx], gamma, reg).backward()
        opt.step()
    return h


@register_measure("mip_hypernetwork_digits", metric="excess", higher_is_better=False,
                  paper=Paper("Magnitude Invariant Parametrizations Improve Hypernetwork Learning", 2023, "2304.07645"))
def mip_hypernetwork_digits(seed: int, *, width: int = 32, steps: int = 300, lr: float = 1e-3,
                            reg: float = 1.0) -> dict[str, float]:
    if width < 1 or steps < 1 or not lr > 0 or reg < 0:
        raise ConfigError(f"mip_hypernetwork_digits: need width, steps >= 1, lr > 0, reg >= 0; got {width}, {steps}, "
                          f"{lr}, {reg}")
    data = digits_splits()
    (x, y), (xt, yt) = data["train"], data["test"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only wait on each other on a loaded machine
    try:
        with torch.random.fork_rng():
            out = {}
            for name, mip in (("standard", False), ("mip", True)):
                h = _train(mip, seed, x, y, width=width, steps=steps, lr=lr, reg=reg)
                with torch.no_grad():
                    out[f"loss_{name}"] = sum(float(_loss(h, xt, yt, torch.tensor([g]), reg)) for g in GAMMAS) / len(GAMMAS)
    finally:
        torch.set_num_threads(threads)
    out["excess"] = out["loss_mip"] - out["loss_standard"]
    return out
