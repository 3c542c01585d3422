"""State tracking: running parity and running counts modulo m, with length extrapolation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from . import register_task
from .base import Batch, GeneratedTask


@dataclass
class _RunningSum(GeneratedTask):
    """Shared machinery of the running-sum tasks: the target at every position t is
    ``(x_1 + ... + x_t) mod m`` for inputs ``x_i`` in ``0 .. m-1``."""

    input_kind: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    length: int = 64
    eval_length: int | None = None
    n_eval: int = 1000
    data_seed: int = 0

    @property
    def modulus(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.modulus

    @property
    def n_outputs(self) -> int:
        return self.modulus

    @property
    def max_length(self) -> int:
        return max(self.length, self.eval_length or 0)

    @property
    def chance(self) -> float:
        return 1.0 / self.modulus

    @property
    def eval_splits(self) -> tuple[str, ...]:
        if self.eval_length is None:
            return ("val", "test")
        return ("val", "test", f"test@{self.eval_length}")

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.length < 1:
            raise ConfigError(f"{where}: length must be >= 1, got {self.length}")
        if self.eval_length is not None and self.eval_length <= self.length:
            raise ConfigError(
                f"{where}: eval_length ({self.eval_length}) must be greater than length "
                f"({self.length}): it is the extrapolation length of the extra test split"
            )
        super().validate()

    def draw(self, n: int, generator: torch.Generator, split: str = "train") -> Batch:
        length = self.eval_length if "@" in split else self.length
        inputs = torch.randint(0, self.modulus, (n, length), generator=generator)
        targets = inputs.cumsum(dim=1) % self.modulus
        return Batch(inputs, targets, torch.ones(n, length, dtype=torch.bool))

    def oracle(self, batch: Batch) -> Tensor:
        """The running sum of the inputs modulo m."""
        return batch.inputs.cumsum(dim=1) % self.modulus


@register_task("parity")
@dataclass
class Parity(_RunningSum):
    """Running parity: inputs are bits, and the target at every position t is the parity
    ``(x_1 + ... + x_t) mod 2`` of the prefix. A classic state-tracking probe: it needs a
    state that flips at every 1, which self-attention finds hard (Hahn 2020, "Theoretical
    Limitations of Self-Attention in Neural Sequence Models"), while recurrences do it easily.

    Every position is scored (mask all True). With ``eval_length`` set, the extra split
    ``test@{eval_length}`` measures length extrapolation on longer sequences.

    Metric: accuracy over all positions. Chance: 0.5.
    """

    name: ClassVar[str] = "parity"

    @property
    def modulus(self) -> int:
        return 2


@register_task("mod_count")
@dataclass
class ModularCount(_RunningSum):
    """Running count modulo m: inputs are tokens in ``0 .. m-1`` and the target at every
    position t is ``(x_1 + ... + x_t) mod m`` (m = 2 is parity); a cyclic-group
    state-tracking task.

    Every position is scored (mask all True). With ``eval_length`` set, the extra split
    ``test@{eval_length}`` measures length extrapolation on longer sequences.

    Metric: accuracy over all positions. Chance: ``1 / m``.
    """

    name: ClassVar[str] = "mod_count"

    m: int = 3

    @property
    def modulus(self) -> int:
        return self.m

    def validate(self) -> None:
        if self.m < 2:
            raise ConfigError(f"task {self.name!r}: m must be >= 2, got {self.m}")
        super().validate()
