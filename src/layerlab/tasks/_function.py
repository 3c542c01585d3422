"""What the function tasks (``input_kind = "function"``) share: a fixed training set of input
functions, evaluation sets from their own streams, the squared-error loss and the relative L2 metric.

A subclass gives ``sensors`` (the m points where the input function is seen) and ``draw(n, gen)``
(n input functions at the sensors and the output functions at the ``queries``, float64), and has
``n_train``, ``n_eval`` and ``data_seed`` parameters.

Loss: mean squared error over functions and query points. Metric: ``rel_l2``, the mean over
functions of ‖ŝ - s‖₂ / ‖s‖₂ over the queries (lower is better; ``mse`` is reported too). Chance:
1.0, the relative error of predicting 0.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .base import Batch, Task, split_generator


class FunctionTask(Task):
    """Base of the operator-learning tasks: see the module docstring."""

    input_kind: ClassVar[str] = "function"
    metric: ClassVar[str] = "rel_l2"
    higher_is_better: ClassVar[bool] = False

    n_train: int
    n_eval: int
    data_seed: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._train = self.draw(self.n_train, split_generator(self.name, "train", self.data_seed))

    def draw(self, n: int, gen: torch.Generator) -> Batch:
        raise NotImplementedError

    @property
    def sensors(self) -> Tensor:
        raise NotImplementedError

    @property
    def queries(self) -> Tensor:
        """The P points where the output function is asked for, (P, 1) float64: the sensors."""
        return self.sensors[:, None]

    @property
    def input_dim(self) -> int:
        return len(self.sensors)

    @property
    def n_outputs(self) -> int:
        return len(self.queries)

    @property
    def chance(self) -> float:
        return 1.0

    def check_batch_size(self, batch_size: int) -> None:
        """Any batch size: <= 0 is the whole training set."""

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if batch_size <= 0 or batch_size >= self.n_train:
            return self._train
        idx = torch.randint(self.n_train, (batch_size,), generator=generator)
        return Batch(self._train.inputs[idx], self._train.targets[idx])

    def _make_eval_set(self, split: str) -> Batch:
        return self.draw(self.n_eval, split_generator(self.name, split, self.data_seed))

    def _check(self, outputs: Tensor, batch: Batch) -> None:
        if outputs.shape != batch.targets.shape:
            raise ShapeError(f"{self.name}: predictions of shape {tuple(outputs.shape)} for targets of shape "
                             f"{tuple(batch.targets.shape)}; the model needs {self.n_outputs} outputs per function")

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        self._check(outputs, batch)
        return (outputs - batch.targets.to(outputs.dtype)).square().mean()

    def _sums(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        self._check(outputs, batch)
        err = outputs.double() - batch.targets.double()
        rel = err.norm(dim=1) / batch.targets.double().norm(dim=1)
        return {"rel": rel.sum().item(), "se": err.square().sum().item(), "n": float(len(batch)),
                "points": float(err.numel())}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["se"] / max(sums.get("points", sums["n"]), 1.0)
        return {"loss": mse, "mse": mse, "rel_l2": sums["rel"] / max(sums["n"], 1.0)}


def check_field_sizes(where: str, length_scale: float, features: int, n_train: int, n_eval: int) -> None:
    """The options every task drawing its functions by ``rff_coefficients`` shares."""
    if not (math.isfinite(length_scale) and length_scale > 0):
        raise ConfigError(f"{where}: length_scale must be finite and > 0, got {length_scale}")
    if features < 1 or n_train < 1 or n_eval < 1:
        raise ConfigError(f"{where}: features, n_train and n_eval must be >= 1, got {features}, "
                          f"{n_train}, {n_eval}")


def rff_coefficients(n: int, features: int, length_scale: float, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(w, ω, φ), each (n, R) float64: n random functions √(2/R) Σ_r w_r cos(ω_r x + φ_r), random
    Fourier features of the Gaussian field with covariance exp(-(x - x')² / (2 l²)) (Rahimi & Recht
    2007), w ~ N(0, 1), ω ~ N(0, 1/l²), φ ~ U[0, 2π)."""
    w = torch.randn(n, features, generator=gen, dtype=torch.float64)
    omega = torch.randn(n, features, generator=gen, dtype=torch.float64) / length_scale
    phi = 2 * math.pi * torch.rand(n, features, generator=gen, dtype=torch.float64)
    return w, omega, phi


def rff_values(coeffs: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
    """The functions of `coeffs` at points x (k,): (n, k)."""
    w, omega, phi = coeffs
    scale = math.sqrt(2.0 / w.shape[1])
    return scale * torch.einsum("nr,nrk->nk", w, torch.cos(omega[..., None] * x + phi[..., None]))
