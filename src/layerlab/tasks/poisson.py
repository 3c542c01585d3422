"""The 1-D Poisson problem -u'' = f, u(0) = u(1) = 0: learn the solution operator f -> u."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from ._function import FunctionTask, check_field_sizes, rff_coefficients, rff_values
from .base import Batch
from .registry import register_task


@register_task("poisson1d")
@dataclass
class Poisson1D(FunctionTask):
    r"""Learn the solution operator f ↦ u of -u'' = f on (0, 1), u(0) = u(1) = 0.

    The 1-D Poisson problem of MgNO's experiments (He, Liu & Xu 2023, arXiv:2310.19809, which
    learns the solution operators of elliptic problems). Discretisation: n interior points
    x_i = i h, h = 1/(n + 1), and the standard second-order finite differences::

        (2 u_i - u_{i-1} - u_{i+1}) / h² = f(x_i),   i = 1..n,   u_0 = u_{n+1} = 0

    whose exact solution is found by a tridiagonal (Thomas) solve: the targets are the discrete
    solution (its distance to the continuous one is O(h²), checked for f = π² sin(πx), u = sin(πx)).
    Forcings f are random Fourier features of the Gaussian field with length scale l
    (``tasks/_function.py``). Inputs (B, n) float64: f(x_i); targets (B, n): u_i
    (``input_kind = "function"``; sensors = queries = the interior grid).

    Splits, loss, metric (``rel_l2``) and chance (1.0) as every function task: a fixed training
    set of ``n_train`` forcings, ``n_eval`` validation and test forcings from their own streams.
    """

    name: ClassVar[str] = "poisson1d"

    n: int = 63
    length_scale: float = 0.1
    features: int = 64
    n_train: int = 1000
    n_eval: int = 500
    data_seed: int = 0

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.n < 1:
            raise ConfigError(f"{where}: n (interior grid points) must be >= 1, got {self.n}")
        check_field_sizes(where, self.length_scale, self.features, self.n_train, self.n_eval)

    @property
    def sensors(self) -> Tensor:
        """The interior grid x_i = i / (n + 1), i = 1..n, float64."""
        return torch.arange(1, self.n + 1, dtype=torch.float64) / (self.n + 1)

    def solve(self, f: Tensor) -> Tensor:
        """The discrete solution u of (2u_i - u_{i-1} - u_{i+1})/h² = f_i, zero boundary values: (..., n)."""
        return thomas(-torch.ones(self.n - 1, dtype=f.dtype), 2 * torch.ones(self.n, dtype=f.dtype),
                      -torch.ones(self.n - 1, dtype=f.dtype), f / (self.n + 1) ** 2)

    def draw(self, n: int, gen: torch.Generator) -> Batch:
        f = rff_values(rff_coefficients(n, self.features, self.length_scale, gen), self.sensors)
        return Batch(f, self.solve(f))

    def oracle(self, batch: Batch) -> Tensor:
        return self.solve(batch.inputs.to(torch.float64))


def thomas(lower: Tensor, diag: Tensor, upper: Tensor, rhs: Tensor) -> Tensor:
    """Solve the tridiagonal system (lower (n-1), diag (n), upper (n-1)) x = rhs (..., n) by
    Gaussian elimination without pivoting (the Thomas algorithm; stable for diagonally dominant
    matrices such as the Laplacian's)."""
    n = diag.shape[0]
    c = torch.empty(max(n - 1, 0), dtype=rhs.dtype)
    d = torch.empty_like(rhs)
    denom = diag[0]
    if n > 1:
        c[0] = upper[0] / denom
    d[..., 0] = rhs[..., 0] / denom
    for i in range(1, n):
        denom = diag[i] - lower[i - 1] * c[i - 1]
        if i < n - 1:
            c[i] = upper[i] / denom
        d[..., i] = (rhs[..., i] - lower[i - 1] * d[..., i - 1]) / denom
    x = torch.empty_like(rhs)
    x[..., -1] = d[..., -1]
    for i in range(n - 2, -1, -1):
        x[..., i] = d[..., i] - c[i] * x[..., i + 1]
    return x
