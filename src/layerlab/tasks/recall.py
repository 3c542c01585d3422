"""Associative recall: retrieve the value bound to a key seen earlier in the sequence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .registry import register_task
from .base import Batch, GeneratedTask, random_subsets

BLANK = 0


@register_task("mqar")
@dataclass
class MQAR(GeneratedTask):
    """Multi-query associative recall (MQAR), from Arora et al. 2023, "Zoology: Measuring and
    Improving Recall in Efficient Language Models" (arXiv:2312.04927).

    A sequence opens with ``pairs`` key-value pairs ``k1 v1 ... kP vP``; the rest holds every
    key once more, in shuffled order at random positions, with the blank token 0 in between.
    At each repeated key the model must predict the value bound to it.

    Tokens: keys are drawn from the first half of the vocabulary without token 0
    (``1 .. vocab//2 - 1``), distinct within a sequence; values from the second half
    (``vocab//2 .. vocab - 1``), independently and uniformly, so two keys may share a value.

    Scored positions: the ``pairs`` query positions (the mask is True there only). Targets
    elsewhere are 0, a placeholder that is never scored.

    Metric: accuracy over query positions. Chance: ``1 / (number of value tokens)``, the
    accuracy of guessing a value uniformly.
    """

    name: ClassVar[str] = "mqar"
    input_kind: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    vocab: int = 128
    length: int = 64
    pairs: int = 8
    n_eval: int = 1000
    data_seed: int = 0

    # --- sizes ----------------------------------------------------------------------
    @property
    def n_keys(self) -> int:
        """Number of tokens that can serve as keys."""
        return self.vocab // 2 - 1

    @property
    def n_values(self) -> int:
        """Number of tokens that can serve as values."""
        return self.vocab - self.vocab // 2

    @property
    def vocab_size(self) -> int:
        return self.vocab

    @property
    def n_outputs(self) -> int:
        return self.vocab

    @property
    def max_length(self) -> int:
        return self.length

    @property
    def chance(self) -> float:
        return 1.0 / self.n_values

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.vocab < 8:
            raise ConfigError(f"{where}: vocab must be >= 8 (blank, keys, values), got {self.vocab}")
        if self.pairs < 1:
            raise ConfigError(f"{where}: pairs must be >= 1, got {self.pairs}")
        if 3 * self.pairs > self.length:
            raise ConfigError(
                f"{where}: {self.pairs} pairs need length >= 3 * pairs = {3 * self.pairs} "
                f"(pairs, then one query per key), got length {self.length}"
            )
        if self.pairs > self.n_keys:
            raise ConfigError(
                f"{where}: {self.pairs} distinct keys do not fit in vocab {self.vocab}, which has "
                f"{self.n_keys} key tokens (1 .. vocab//2 - 1); raise vocab to >= {2 * self.pairs + 2}"
            )
        super().validate()

    # --- data -----------------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator, split: str = "train") -> Batch:
        P, L = self.pairs, self.length
        keys = random_subsets(n, self.n_keys, P, generator) + 1
        values = torch.randint(self.vocab // 2, self.vocab, (n, P), generator=generator)
        # P distinct query positions after the pairs, in random order: key i is queried at qpos[:, i]
        qpos = random_subsets(n, L - 2 * P, P, generator) + 2 * P
        inputs = torch.full((n, L), BLANK, dtype=torch.long)
        inputs[:, 0:2 * P:2] = keys
        inputs[:, 1:2 * P:2] = values
        inputs.scatter_(1, qpos, keys)
        targets = torch.zeros(n, L, dtype=torch.long).scatter_(1, qpos, values)
        mask = torch.zeros(n, L, dtype=torch.bool).scatter_(1, qpos, True)
        return Batch(inputs, targets, mask)

    def oracle(self, batch: Batch) -> Tensor:
        """The value bound to each query key (0 at the pair and blank positions)."""
        x = batch.inputs
        P = self.pairs
        keys, values = x[:, 0:2 * P:2], x[:, 1:2 * P:2]
        match = x[:, :, None] == keys[:, None, :]  # (B, L, P)
        match[:, :2 * P] = False
        return (match.long() * values[:, None, :]).sum(dim=-1)
