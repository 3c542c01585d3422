"""Copying tasks: reproduce tokens seen earlier, ignoring filler."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .registry import register_task
from .base import Batch, GeneratedTask, random_subsets


@register_task("selective_copy")
@dataclass
class SelectiveCopy(GeneratedTask):
    """Selective copying, from Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
    Selective State Spaces" (arXiv:2312.00752).

    ``n_tokens`` data tokens lie, in order, at random positions among blanks in the first
    ``length - n_tokens`` positions; the last ``n_tokens`` positions hold a marker token. At the
    i-th marker the model must output the i-th data token.

    Tokens: data tokens are ``0 .. vocab-1`` (drawn uniformly, repeats allowed), the blank is
    ``vocab`` and the marker ``vocab + 1``, so ``vocab_size = vocab + 2``; the model predicts one
    of the ``vocab`` data tokens (``n_outputs = vocab``).

    Scored positions: the marker positions (the mask is True there only). Targets elsewhere
    are 0, a placeholder that is never scored.

    Metric: accuracy over marker positions. Chance: ``1 / vocab``.
    """

    name: ClassVar[str] = "selective_copy"
    input_kind: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    vocab: int = 16
    length: int = 64
    n_tokens: int = 8
    n_eval: int = 1000
    data_seed: int = 0

    @property
    def blank(self) -> int:
        return self.vocab

    @property
    def marker(self) -> int:
        return self.vocab + 1

    @property
    def vocab_size(self) -> int:
        return self.vocab + 2

    @property
    def n_outputs(self) -> int:
        return self.vocab

    @property
    def max_length(self) -> int:
        return self.length

    @property
    def chance(self) -> float:
        return 1.0 / self.vocab

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.vocab < 2:
            raise ConfigError(f"{where}: vocab must be >= 2, got {self.vocab}")
        if self.n_tokens < 1:
            raise ConfigError(f"{where}: n_tokens must be >= 1, got {self.n_tokens}")
        if self.n_tokens > self.length - self.n_tokens:
            raise ConfigError(
                f"{where}: {self.n_tokens} tokens and their {self.n_tokens} markers need "
                f"length >= {2 * self.n_tokens}, got length {self.length}"
            )
        super().validate()

    def draw(self, n: int, generator: torch.Generator, split: str = "train") -> Batch:
        k, L = self.n_tokens, self.length
        tokens = torch.randint(0, self.vocab, (n, k), generator=generator)
        pos = random_subsets(n, L - k, k, generator).sort(dim=1).values
        inputs = torch.full((n, L), self.blank, dtype=torch.long)
        inputs.scatter_(1, pos, tokens)
        inputs[:, L - k:] = self.marker
        targets = torch.zeros(n, L, dtype=torch.long)
        targets[:, L - k:] = tokens
        mask = torch.zeros(n, L, dtype=torch.bool)
        mask[:, L - k:] = True
        return Batch(inputs, targets, mask)

    def oracle(self, batch: Batch) -> Tensor:
        """The data tokens, in order, at the marker positions (0 elsewhere)."""
        x = batch.inputs
        k, L = self.n_tokens, x.shape[1]
        is_data = x[:, : L - k] < self.vocab
        # a stable sort on "is not data" brings the data positions first, in their order
        order = torch.argsort((~is_data).to(torch.int8), dim=1, stable=True)[:, :k]
        out = torch.zeros_like(x)
        out[:, L - k:] = x[:, : L - k].gather(1, order)
        return out
