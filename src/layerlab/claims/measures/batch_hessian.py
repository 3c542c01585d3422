r"""Extremal eigenvalues of mini-batch Hessians against the Hessian of the whole training set.

Paper: Granziol, Zohren & Roberts, "Learning Rates as a Function of Batch Size: A Random Matrix
Theory Approach to Neural Network Training", JMLR 2022, arXiv:2006.09092 (abstract; Secs. 3-4).
Writing the Hessian of a batch of ``B`` examples as the empirical Hessian (all ``N`` examples)
plus a random perturbation whose variance grows as the batch shrinks (a spiked, field-dependent
random-matrix model), the paper shows that "the magnitude of the extremal values of the batch
Hessian are larger than those of the empirical Hessian", the outliers moving out as ``B`` falls;
its learning-rate rules (maximal step linear in ``B`` for SGD, ``sqrt(B)`` for Adam) follow from
the top eigenvalue's growth at small ``B``.

The measurement trains a tanh MLP (``64 -> width -> 10``) by ``train_steps`` full-batch GD steps
(step ``lr``) on the cross-entropy of the first ``n_train`` training digits (float64), then
measures, by Lanczos (``lens.hessian``), the largest and smallest eigenvalues of the Hessian of
the mean loss over all ``n_train`` examples and over ``n_batches`` batches of each size in
``batch_sizes``, drawn without replacement from them. With ``m_B`` the mean over batches of
``|λ_ext(H_B)|`` and ``m_N`` the full set's, ``shortfall = max over B and over both ends of
(1 - m_B / m_N)``: at most 0 when every batch size's extremal eigenvalues are larger in magnitude
than the empirical Hessian's, as the paper says. Also returned per ``B``: ``top.B``,
``bottom.B`` (the mean extremal eigenvalues) and the least-squares slope of
``log(m_B - m_N)`` against ``log B`` for the top end (``top_excess_slope``; -1 is the
separated-outlier regime of the spiked model, -1/2 a bulk edge).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import hessian
from ...registry import Paper
from ...tasks.digits import Digits
from . import register_measure
from .ntk_width import loglog_slope

Batch = tuple[torch.Tensor, torch.Tensor]


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def extremes(model: nn.Module, batch: Batch, generator: torch.Generator, max_iter: int = 300) -> tuple[float, float]:
    """(λ_max, λ_min) of the Hessian of the mean cross-entropy on ``batch``, by Lanczos (at most
    ``max_iter`` products each, relative residual 1e-8)."""
    op = hessian.HessianOperator(model, cross_entropy, [batch])
    top = op.top_eigenpairs(1, which="largest", max_iter=max_iter, tol=1e-8, generator=generator)
    bottom = op.top_eigenpairs(1, which="smallest", max_iter=max_iter, tol=1e-8, generator=generator)
    return float(top.values[0]), float(bottom.values[0])


def centred_digits_tanh_mlp(full, n_train: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """The first ``n_train`` examples of the digits batch ``full`` in float64, inputs centred, and a
    tanh MLP 64-``width``-10 in float64 with PyTorch's default init drawn under ``seed`` (the global
    RNG is left as it was)."""
    x, y = full.inputs[:n_train].double(), full.targets[:n_train]
    x = x - x.mean(0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 10)).double()
    return x, y, model


@register_measure("batch_hessian_extremes", metric="shortfall",
                  paper=Paper("Learning Rates as a Function of Batch Size: A Random Matrix Theory Approach to "
                              "Neural Network Training", 2020, "2006.09092"))
def batch_hessian_extremes(seed: int, *, n_train: int = 512, width: int = 32, train_steps: int = 200,
                           lr: float = 0.5, batch_sizes: tuple[int, ...] | list[int] = (8, 32, 128),
                           n_batches: int = 8, lanczos_iter: int = 300) -> dict[str, float]:
    sizes = [int(b) for b in batch_sizes]
    if (not sizes or min(sizes) < 1 or max(sizes) >= n_train or n_batches < 1 or train_steps < 0 or not lr > 0
            or lanczos_iter < 1):
        raise ConfigError(f"batch_hessian_extremes: need batch sizes in 1..n_train-1 ({n_train}), n_batches >= 1, "
                          f"train_steps >= 0, lr > 0, lanczos_iter >= 1; got {sizes}, {n_batches}, {train_steps}, {lr}, "
                          f"{lanczos_iter}")
    full = Digits().train_batch(0, torch.Generator())
    if not 10 <= n_train <= len(full):
        raise ConfigError(f"n_train must lie in 10..{len(full)}, got {n_train}")
    x, y, model = centred_digits_tanh_mlp(full, n_train, width, seed)
    params = list(model.parameters())
    for _ in range(train_steps):
        grads = torch.autograd.grad(cross_entropy(model, (x, y)), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    gen = torch.Generator().manual_seed(seed)
    top_n, bottom_n = extremes(model, (x, y), gen, lanczos_iter)
    out = {"top.full": top_n, "bottom.full": bottom_n}
    shortfall, excess = -math.inf, []
    for b in sizes:
        tops, bottoms = [], []
        for _ in range(n_batches):
            idx = torch.randperm(n_train, generator=gen)[:b]
            t, s = extremes(model, (x[idx], y[idx]), gen, lanczos_iter)
            tops.append(abs(t))
            bottoms.append(abs(s))
        m_top, m_bottom = sum(tops) / n_batches, sum(bottoms) / n_batches
        out[f"top.{b}"], out[f"bottom.{b}"] = m_top, -m_bottom
        shortfall = max(shortfall, 1 - m_top / abs(top_n), 1 - m_bottom / abs(bottom_n))
        excess.append(m_top - abs(top_n))
    if all(e > 0 for e in excess) and len(sizes) >= 2:
        out["top_excess_slope"] = loglog_slope(sizes, excess)
    return {"shortfall": shortfall, **out}
