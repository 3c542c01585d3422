"""Symbolic regression: fit a closed-form function of a few inputs, the KAN paper's toy tasks."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, close_matches
from .base import Batch, Task, split_generator
from .registry import register_task


def _bessel_j0_20x(x: Tensor) -> Tensor:
    return torch.special.bessel_j0(20.0 * x[:, 0])


def _exp_sin_plus_square(x: Tensor) -> Tensor:
    return torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)


def _product(x: Tensor) -> Tensor:
    return x[:, 0] * x[:, 1]


def _exp_mean_sin_squares(x: Tensor) -> Tensor:
    return torch.exp(torch.sin(math.pi * x / 2).square().mean(-1))


def _exp_two_rings(x: Tensor) -> Tensor:
    a = torch.sin(math.pi * (x[:, 0] ** 2 + x[:, 1] ** 2))
    b = torch.sin(math.pi * (x[:, 2] ** 2 + x[:, 3] ** 2))
    return torch.exp(0.5 * (a + b))


# name -> (number of inputs, f, the formula as the paper writes it); Liu et al. 2024, Figure 3.1
FORMULAS: dict[str, tuple[int, Callable[[Tensor], Tensor], str]] = {
    "bessel": (1, _bessel_j0_20x, "f(x) = J0(20x)"),
    "exp_sin": (2, _exp_sin_plus_square, "f(x, y) = exp(sin(pi x) + y^2)"),
    "product": (2, _product, "f(x, y) = x y"),
    "exp_mean_sin": (100, _exp_mean_sin_squares, "f(x_1..x_100) = exp((1/100) sum_i sin^2(pi x_i / 2))"),
    "exp_rings": (4, _exp_two_rings, "f(x_1..x_4) = exp((sin(pi (x_1^2 + x_2^2)) + sin(pi (x_3^2 + x_4^2))) / 2)"),
}


@register_task("symbolic")
@dataclass
class Symbolic(Task):
    r"""Regression onto a closed-form function of inputs drawn uniformly from ``[-1, 1]^n``.

    The toy functions of Liu et al., "KAN: Kolmogorov-Arnold Networks" (2024, arXiv:2404.19756),
    Figure 3.1, where KANs are claimed to reach lower test RMSE than MLPs with more parameters:
    ``formula`` is one of ``FORMULAS`` (``exp_sin``: ``f(x, y) = exp(sin(πx) + y²)``, ...).

    Data: a fixed training set of ``n_train`` inputs (drawn from ``data_seed``), fresh fixed
    validation and test sets of ``n_eval`` inputs each (their own streams); targets are
    ``f(x) + N(0, noise²)`` on the training set only. ``train_batch`` samples training rows with
    replacement; a batch size <= 0 gives the whole training set (full batch, as the paper trains).

    Loss: the mean squared error ``(1/B) Σ (ŷ − y)²``. Metrics: ``rmse`` (the paper's; lower is
    better) and ``mse``. Chance: the RMSE of predicting the test targets' mean, i.e. their standard
    deviation.
    """

    name: ClassVar[str] = "symbolic"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "rmse"
    higher_is_better: ClassVar[bool] = False

    formula: str = "exp_sin"
    n_train: int = 1000
    n_eval: int = 1000
    noise: float = 0.0
    data_seed: int = 0

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.formula not in FORMULAS:
            near = close_matches(self.formula, FORMULAS, n=1)
            did = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{where}: unknown formula {self.formula!r}{did} Valid: {', '.join(FORMULAS)}")
        if self.n_train < 1 or self.n_eval < 1:
            raise ConfigError(f"{where}: needs n_train >= 1 and n_eval >= 1, got {self.n_train}, {self.n_eval}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"{where}: noise must be a finite number >= 0, got {self.noise}")

    def __post_init__(self) -> None:
        super().__post_init__()
        gen = split_generator(self.name, f"train/{self.formula}", self.data_seed)
        x = self._inputs(self.n_train, gen)
        y = self.function(x)
        if self.noise > 0:
            y = y + self.noise * torch.randn(y.shape, generator=gen, dtype=y.dtype)
        self._train = Batch(x, y)

    # --- sizes ------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return FORMULAS[self.formula][0]

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def chance(self) -> float:
        return float(self.eval_set("test").targets.double().std(unbiased=False))

    # --- data -------------------------------------------------------------------------
    def function(self, x: Tensor) -> Tensor:
        """f(x) as an (N, 1) column (in x's dtype)."""
        return FORMULAS[self.formula][1](x).unsqueeze(-1)

    def _inputs(self, n: int, gen: torch.Generator) -> Tensor:
        return 2 * torch.rand(n, self.input_dim, generator=gen, dtype=torch.float64) - 1

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if batch_size <= 0:
            return self._train
        idx = torch.randint(self.n_train, (batch_size,), generator=generator)
        return Batch(self._train.inputs[idx], self._train.targets[idx])

    def _make_eval_set(self, split: str) -> Batch:
        x = self._inputs(self.n_eval, split_generator(self.name, f"{split}/{self.formula}", self.data_seed))
        return Batch(x, self.function(x))

    def oracle(self, batch: Batch) -> Tensor:
        return self.function(batch.inputs.to(torch.float64))

    # --- loss and metric --------------------------------------------------------------
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        if outputs.shape != batch.targets.shape:
            raise ShapeError(f"symbolic: predictions of shape {tuple(outputs.shape)} for targets of shape "
                             f"{tuple(batch.targets.shape)}; the model needs 1 output")
        return (outputs - batch.targets.to(outputs.dtype)).square().mean()

    def _sums(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        return {"se": (outputs.double() - batch.targets.double()).square().sum().item(), "n": float(len(batch))}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["se"] / max(sums["n"], 1.0)
        return {"loss": mse, "mse": mse, "rmse": math.sqrt(mse)}
