"""In-context linear regression: prompts of (x_i, y_i) pairs and a query, a fresh task per prompt."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .base import Batch, Task, split_generator
from .registry import register_task


@register_task("in_context_regression")
@dataclass
class InContextRegression(Task):
    r"""In-context linear regression (the setting of Garg et al. 2022 and of Zhang, Frei & Bartlett,
    "Trained Transformers Learn Linear Models In-Context", 2023, arXiv:2306.09927, Sec. 3.1).

    Each prompt draws its own task ``w ~ N(0, I_d)``, covariates ``x_1..x_N, x_query ~ N(0, Lambda)``
    with ``Lambda = diag(spectrum)`` (identity when ``spectrum`` is empty) and labels
    ``y_i = <w, x_i>`` (+ ``N(0, noise^2)``). The target is ``y_query = <w, x_query>`` (noise-free).

    Inputs are the paper's embedding ``E = [[x_1 .. x_N x_query], [y_1 .. y_N 0]]`` stored
    token-major and flattened: ``(B, (N+1)(d+1))`` float64, each token ``(x_i, y_i)`` and the query
    ``(x_query, 0)`` last; ``tokens(batch)`` gives ``(B, N+1, d+1)``. Targets ``(B, 1)``.

    Loss and metric: ``mse = (1/2) mean (y_hat - y_query)^2`` (the paper's ``L``). "Chance" is
    predicting 0: ``tr(Lambda) / 2``. The oracle is the posterior mean of ``<w, x_query>`` given
    the prompt (minimum-norm least squares in ``w``; exact once ``N >= d`` without noise, ridge
    with ``noise^2`` otherwise). Training prompts are drawn fresh from the run's generator;
    validation and test sets are fixed by ``data_seed`` (continuous draws: they never coincide).
    """

    name: ClassVar[str] = "in_context_regression"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    dim: int = 5
    context: int = 20
    spectrum: tuple[float, ...] = ()
    noise: float = 0.0
    n_eval: int = 4096
    data_seed: int = 0

    def __post_init__(self) -> None:
        self.spectrum = tuple(float(s) for s in self.spectrum)
        super().__post_init__()

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.dim < 1 or self.context < 1 or self.n_eval < 1:
            raise ConfigError(f"{where}: needs dim, context, n_eval >= 1; got {self.dim}, {self.context}, {self.n_eval}")
        if self.spectrum and len(self.spectrum) != self.dim:
            raise ConfigError(f"{where}: spectrum has {len(self.spectrum)} values for dim = {self.dim}; give {self.dim} "
                              "variances (the diagonal of Lambda) or none for the identity")
        if any(not (math.isfinite(s) and s > 0) for s in self.spectrum):
            raise ConfigError(f"{where}: spectrum values are variances, finite and > 0; got {list(self.spectrum)}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"{where}: noise must be finite and >= 0, got {self.noise}")

    @property
    def covariance(self) -> Tensor:
        """``Lambda`` (d x d, float64)."""
        spec = self.spectrum or (1.0,) * self.dim
        return torch.diag(torch.tensor(spec, dtype=torch.float64))

    @property
    def input_dim(self) -> int:
        return (self.context + 1) * (self.dim + 1)

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def chance(self) -> float:
        return 0.5 * float(torch.trace(self.covariance))

    def tokens(self, batch: Batch) -> Tensor:
        """The prompts as ``(B, N+1, d+1)`` tokens ``(x_i, y_i)``, the query ``(x_query, 0)`` last."""
        return batch.inputs.reshape(len(batch), self.context + 1, self.dim + 1)

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        d, m = self.dim, self.context
        scale = self.covariance.diagonal().sqrt()
        w = torch.randn(n, d, generator=generator, dtype=torch.float64)
        x = torch.randn(n, m + 1, d, generator=generator, dtype=torch.float64) * scale
        y = (x @ w[:, :, None]).squeeze(-1)  # (n, N+1)
        target = y[:, -1:].clone()
        y[:, -1] = 0.0
        if self.noise > 0:
            y[:, :-1] += self.noise * torch.randn(n, m, generator=generator, dtype=torch.float64)
        return Batch(torch.cat([x, y[..., None]], 2).reshape(n, -1), target)

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if batch_size < 1:
            raise ConfigError(f"task {self.name!r} draws fresh prompts: batch_size must be >= 1, got {batch_size}")
        return self.draw(batch_size, generator)

    def _make_eval_set(self, split: str) -> Batch:
        return self.draw(self.n_eval, split_generator(self.name, split, self.data_seed))

    def oracle(self, batch: Batch) -> Tensor:
        t = self.tokens(batch).double()
        x, y, xq = t[:, :-1, :-1], t[:, :-1, -1], t[:, -1, :-1]
        # posterior mean of w under w ~ N(0, I): ridge with lambda = noise^2 (pseudo-inverse at 0)
        if self.noise > 0:
            gram = x.transpose(1, 2) @ x + self.noise**2 * torch.eye(self.dim, dtype=torch.float64)
            w = torch.linalg.solve(gram, (x.transpose(1, 2) @ y[..., None]))
        else:
            w = torch.linalg.pinv(x) @ y[..., None]
        return (xq[:, None, :] @ w).reshape(-1, 1)

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        if outputs.shape != batch.targets.shape:
            raise ShapeError(f"in_context_regression: predictions of shape {tuple(outputs.shape)} for targets of "
                             f"shape {tuple(batch.targets.shape)}; the model needs 1 output per prompt")
        return 0.5 * (outputs - batch.targets.to(outputs.dtype)).square().mean()

    def _sums(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        err = (outputs.double() - batch.targets.double()).square().sum()
        return {"se": 0.5 * err.item(), "n": float(len(batch))}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["se"] / max(sums["n"], 1.0)
        return {"loss": mse, "mse": mse}
