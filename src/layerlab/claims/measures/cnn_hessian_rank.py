r"""The rank of the loss Hessian of linear convolutional networks as their channels grow.

Paper: Singh, Hofmann & Schölkopf, "The Hessian perspective into the Nature of Convolutional
Neural Networks", ICML 2023, arXiv:2305.09088 (abstract; Fig. 1; Sec. 4: tight upper bounds on
the Hessian rank of CNNs with linear activations, through their Toeplitz representation). As the
number of channels ``m`` of the hidden layers grows, the number of parameters grows as ``m²``
but the rank of the loss Hessian at initialization only linearly: "the Hessian rank grows as the
square root of the number of parameters".

The measurement builds a linear 1-D CNN without biases, ``Conv1d(c_in, m, k) -> Conv1d(m, m, k)
-> Conv1d(m, c_out, k)`` ("same" padding, PyTorch's default initialization from the seed,
float64), on ``n_train`` random inputs of ``c_in`` channels and length ``length`` with random
targets of the output's shape, loss ``mean((f - y)^2)``. For each width ``m`` of ``widths`` it
forms the exact Hessian at initialization (``lens.hessian.HessianOperator.dense``, one product
per parameter) and its numerical rank (eigenvalues above ``rtol · max|λ|``), and fits the
least-squares slope of ``log rank`` against ``log P`` over the widths. ``slope_error =
|slope - 1/2|``; also returned: ``rank.m``, ``params.m`` and the slope.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import hessian
from ...registry import Paper
from . import register_measure
from .ntk_width import loglog_slope

Batch = tuple[torch.Tensor, torch.Tensor]


def linear_cnn(c_in: int, width: int, c_out: int, kernel: int, seed: int) -> nn.Sequential:
    """Three bias-free 1-D convolutions with 'same' padding and no activation, float64."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv1d(c_in, width, kernel, padding="same", bias=False),
                             nn.Conv1d(width, width, kernel, padding="same", bias=False),
                             nn.Conv1d(width, c_out, kernel, padding="same", bias=False)).double()


def mse(model: nn.Module, batch: Batch) -> torch.Tensor:
    return (model(batch[0]) - batch[1]).square().mean()


def hessian_rank(model: nn.Module, batch: Batch, rtol: float = 1e-9) -> tuple[int, torch.Tensor]:
    """(numerical rank, eigenvalues) of the exact loss Hessian: eigenvalues with
    ``|λ| > rtol · max|λ|``."""
    Hd = hessian.HessianOperator(model, mse, [batch]).dense(max_dim=8192)
    eig = torch.linalg.eigvalsh(0.5 * (Hd + Hd.T))
    return int((eig.abs() > rtol * eig.abs().max()).sum()), eig


@register_measure("cnn_hessian_rank", metric="slope_error",
                  paper=Paper("The Hessian perspective into the Nature of Convolutional Neural Networks", 2023,
                              "2305.09088"))
def cnn_hessian_rank(seed: int, *, widths: tuple[int, ...] | list[int] = (8, 16, 32), c_in: int = 2,
                     c_out: int = 2, kernel: int = 3, length: int = 16, n_train: int = 64,
                     rtol: float = 1e-9) -> dict[str, float]:
    widths = [int(m) for m in widths]
    if len(widths) < 2 or min(widths) < 1 or len(set(widths)) != len(widths):
        raise ConfigError(f"cnn_hessian_rank: need at least two distinct widths >= 1, got {widths}")
    if min(c_in, c_out, kernel, length, n_train) < 1 or not 0 < rtol < 1:
        raise ConfigError("cnn_hessian_rank: c_in, c_out, kernel, length, n_train must be >= 1 and 0 < rtol < 1; "
                          f"got {c_in}, {c_out}, {kernel}, {length}, {n_train}, {rtol}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, c_in, length, generator=gen, dtype=torch.float64)
    y = torch.randn(n_train, c_out, length, generator=gen, dtype=torch.float64)
    out: dict[str, float] = {}
    ranks, params = [], []
    for m in widths:
        model = linear_cnn(c_in, m, c_out, kernel, seed * 1009 + m)
        r, _ = hessian_rank(model, (x, y), rtol)
        p = sum(q.numel() for q in model.parameters())
        ranks.append(r)
        params.append(p)
        out[f"rank.{m}"], out[f"params.{m}"] = float(r), float(p)
    slope = loglog_slope(params, ranks)
    return {"slope_error": abs(slope - 0.5), "slope": slope, **out}
