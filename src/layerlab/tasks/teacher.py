"""A linear teacher: the regression task whose learning dynamics have closed forms."""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .registry import register_task
from .base import Batch, Task, split_generator


@register_task("linear_teacher")
@dataclass
class LinearTeacher(Task):
    r"""Regression onto a linear teacher, ``y = A x + ε``, with ``A = U diag(s) Vᵀ``.

    The setting of Saxe, McClelland & Ganguli 2013 ("Exact solutions to the nonlinear dynamics
    of learning in deep linear neural networks", arXiv:1312.6120): with whitened inputs
    (``Σ^{11} = E[x xᵀ] = I``) the input–output correlation is ``Σ^{31} = A = U S Vᵀ``, and a
    deep linear network learns each singular mode ``(s_α, u_α, v_α)`` along a sigmoid whose
    closed form ``layerlab.lens.theory`` gives.

    Data: ``U`` (out × r) and ``V`` (in × r) are Haar-random with orthonormal columns drawn from
    ``data_seed``; ``s = singular_values`` (r of them, r <= min(in, out)). The training set is
    ``n_train`` inputs whose sample second moment is exactly the identity,
    ``(1/P) Σ_μ x_μ x_μᵀ = I`` (``√P`` times the orthonormal columns of a random P × in matrix;
    needs ``n_train >= in_features``), so full-batch training sees exactly ``Σ^{11} = I`` and
    ``Σ^{31} = A``. Validation and test inputs are fresh ``N(0, I)`` draws (``n_eval`` each).
    ``noise`` adds ``N(0, noise²)`` to every target (the training set's noise is fixed).

    Loss: ``½ (1/P) Σ_μ ‖y_μ − ŷ_μ‖²`` (half the squared error summed over outputs, averaged over
    examples), so plain gradient descent with step η is Saxe's gradient flow with ``τ = 1/η``.
    Metric: ``mse`` = that loss (lower is better); "chance" is the loss of predicting 0,
    ``½ Σ s_α²`` (plus the noise).
    """

    name: ClassVar[str] = "linear_teacher"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    in_features: int = 16
    out_features: int = 16
    singular_values: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    n_train: int = 256
    n_eval: int = 512
    noise: float = 0.0
    data_seed: int = 0

    def __post_init__(self) -> None:
        self.singular_values = tuple(float(s) for s in self.singular_values)
        super().__post_init__()
        gen = torch.Generator().manual_seed(self.data_seed)
        r = len(self.singular_values)
        self.U = _orthonormal_columns(self.out_features, r, gen)
        self.V = _orthonormal_columns(self.in_features, r, gen)
        self.S = torch.tensor(self.singular_values, dtype=torch.float64)
        self.A = self.U @ torch.diag(self.S) @ self.V.T
        x = _orthonormal_columns(self.n_train, self.in_features, gen) * self.n_train ** 0.5
        self._train = Batch(x, self._targets(x, gen))

    def validate(self) -> None:
        where = f"task {self.name!r}"
        r = len(self.singular_values)
        if min(self.in_features, self.out_features) < 1 or r < 1:
            raise ConfigError(f"{where}: needs in_features, out_features >= 1 and at least one singular value")
        if r > min(self.in_features, self.out_features):
            raise ConfigError(f"{where}: {r} singular values but the teacher is {self.out_features} x "
                              f"{self.in_features} (rank <= {min(self.in_features, self.out_features)}); "
                              "give fewer singular values or widen the teacher")
        if any(not (math.isfinite(s) and s > 0) for s in self.singular_values):
            raise ConfigError(f"{where}: singular values must be finite and > 0, got {list(self.singular_values)}")
        if self.n_train < self.in_features:
            raise ConfigError(f"{where}: whitened inputs need n_train >= in_features = {self.in_features}, "
                              f"got {self.n_train}")
        if self.n_eval < 1 or not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"{where}: needs n_eval >= 1 and a finite noise >= 0, got {self.n_eval}, {self.noise}")

    # --- sizes ----------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.in_features

    @property
    def n_outputs(self) -> int:
        return self.out_features

    @property
    def chance(self) -> float:
        return 0.5 * (float((self.S ** 2).sum()) + self.out_features * self.noise ** 2)

    # --- data -------------------------------------------------------------------------
    def _targets(self, x: Tensor, gen: torch.Generator) -> Tensor:
        y = x @ self.A.T
        if self.noise > 0:
            y = y + self.noise * torch.randn(y.shape, generator=gen, dtype=torch.float64)
        return y

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if batch_size <= 0 or batch_size >= self.n_train:
            return self._train
        idx = torch.randint(self.n_train, (batch_size,), generator=generator)
        return Batch(self._train.inputs[idx], self._train.targets[idx])

    def _make_eval_set(self, split: str) -> Batch:
        gen = split_generator(self.name, split, self.data_seed)
        x = torch.randn(self.n_eval, self.in_features, generator=gen, dtype=torch.float64)
        return Batch(x, self._targets(x, gen))

    def oracle(self, batch: Batch) -> Tensor:
        return batch.inputs.to(torch.float64) @ self.A.T

    # --- loss and metric --------------------------------------------------------------------
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        if outputs.shape != batch.targets.shape:
            raise ShapeError(f"linear_teacher: predictions of shape {tuple(outputs.shape)} for targets of shape "
                             f"{tuple(batch.targets.shape)}; the model needs {self.out_features} outputs")
        return 0.5 * (outputs - batch.targets.to(outputs.dtype)).square().sum(-1).mean()

    def _sums(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        err = (outputs.double() - batch.targets.double()).square().sum()
        return {"se": 0.5 * err.item(), "n": float(len(batch))}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["se"] / max(sums["n"], 1.0)
        return {"loss": mse, "mse": mse}

    def mode_strengths(self, model: nn.Module) -> Tensor:
        """``u_αᵀ W_total v_α`` for each teacher mode, where ``W_total`` is the network's
        input–output map (``model.product()`` for a deep linear network)."""
        product = model.product() if hasattr(model, "product") else None
        if product is None:
            raise ConfigError("mode_strengths needs a linear model with a product() (the deep_linear backbone)")
        product = product.detach().double().cpu()
        return torch.einsum("oa,oi,ia->a", self.U, product, self.V)


def _orthonormal_columns(rows: int, cols: int, gen: torch.Generator) -> Tensor:
    """A (rows x cols) float64 matrix with orthonormal columns (rows >= cols), Haar-random."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))
