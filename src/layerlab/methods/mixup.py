"""MixUp: train on convex combinations of pairs of examples and of their labels.

Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond Empirical Risk Minimization" (2017,
arXiv:1710.09412):

    x̃ = λ x_i + (1 − λ) x_j,    ỹ = λ y_i + (1 − λ) y_j,    λ ~ Beta(α, α),

with (x_j, y_j) the batch in a random order and one λ per batch, as the authors' code draws it.
The cross-entropy is linear in the target distribution, so the loss on the one-hot mixture is

    CE(f(x̃), ỹ) = λ CE(f(x̃), y_i) + (1 − λ) CE(f(x̃), y_j),

which is how it is computed here (the task's own loss on each label set; tested equal to the
soft-target cross-entropy). Hooks: ``transform_batch`` (mixes the inputs, keeps the pairing)
and ``transform_loss`` (recomputes the loss from the two label sets). Vector inputs only (a token
sequence has no convex combination). λ and the order come from a NumPy generator seeded like the
method's torch generator, carried through checkpoints.

AdaMixUp (Guo, Mao & Zhang, "MixUp as Locally Linear Out-Of-Manifold Regularization", 2018,
arXiv:1809.02499) learns the mixing policy instead: method ``adamixup`` (``methods/adamixup.py``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext, method_seed

PAPER = Paper("mixup: Beyond Empirical Risk Minimization", 2017, "1710.09412")


@register("method", "mixup", paper=PAPER)
class MixUp(Method):
    """MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", 2017, arXiv:1710.09412):
    x̃ = λ x_i + (1 − λ) x_j, ỹ = λ y_i + (1 − λ) y_j, λ ~ Beta(α, α), one λ per batch.
    Hooks: batch, loss. Option: ``alpha`` (default 1.0, > 0).
    """

    def __init__(self, *, alpha: float = 1.0) -> None:
        if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
            raise ConfigError(f"mixup: alpha must be a finite number > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.lam: float | None = None  # this step's λ and partner order (set by transform_batch)
        self.perm: Tensor | None = None

    def attach(self, run: RunContext, index: int) -> None:
        super().attach(run, index)
        self.rng = np.random.Generator(np.random.PCG64(method_seed(run.seed, index, self.registry_name)))

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if run.input_kind != "vector":
            raise ConfigError(f"mixup mixes feature vectors; this task has {run.input_kind!r} inputs. "
                              "Use it on a vector task (digits, modular with encoding = 'onehot', ...)")

    def draw(self, n: int) -> tuple[float, np.ndarray]:
        """λ ~ Beta(α, α) and a random order of the n examples."""
        return float(self.rng.beta(self.alpha, self.alpha)), self.rng.permutation(n)

    def transform_batch(self, batch: Any, step: int) -> Any:
        lam, order = self.draw(len(batch))
        perm = torch.from_numpy(order).to(batch.inputs.device)
        x = batch.inputs
        mixed = lam * x + (1.0 - lam) * x[perm]
        self.lam, self.perm = lam, perm
        return type(batch)(mixed, batch.targets, batch.mask)

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        partner = type(batch)(batch.inputs, batch.targets[self.perm],
                              None if batch.mask is None else batch.mask[self.perm])
        return self.lam * self.run.loss(outputs, batch) + (1.0 - self.lam) * self.run.loss(outputs, partner)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "numpy": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["numpy"]
