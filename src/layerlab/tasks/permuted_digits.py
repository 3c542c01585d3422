"""Permuted digits: a non-stationary sequence of digit tasks whose labels are permuted every K steps.

The plasticity benchmarks of Lyle et al. ("Understanding plasticity in neural networks", 2023,
arXiv:2303.01486; "Normalization and effective learning rates in reinforcement learning", 2024,
arXiv:2407.01800, Sec. 5) train one network on a sequence of tasks that share inputs but change
the input-label map; plasticity is the ability to fit the latest task as well as a fresh network.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Batch
from .digits import Digits, _load_digits
from .registry import register_task

# The step counter lives in the seed of the data generator the trainer passes in (see the class
# docstring): the top 8 bits mark a seed this task wrote, then 32 bits of the run's stream, then
# 24 bits of count.
_TAG, _TAG_SHIFT = 0xA7, 56
_STREAM_BITS, _COUNT_BITS = 32, 24
_COUNT_MASK = (1 << _COUNT_BITS) - 1
_STREAM_MASK = (1 << _STREAM_BITS) - 1


def draws_so_far(generator: torch.Generator) -> tuple[int, int]:
    """(stream, count): how many training batches were drawn from `generator` by this task, and the
    32-bit stream id of its run (a generator this task never drew from: count 0)."""
    seed = generator.initial_seed()
    if seed >> _TAG_SHIFT == _TAG:
        return (seed >> _COUNT_BITS) & _STREAM_MASK, seed & _COUNT_MASK
    digest = hashlib.sha256(f"permuted_digits/stream/{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little"), 0


def advance(generator: torch.Generator) -> int:
    """Count one draw: reseed `generator` for draw number ``count + 1`` and return ``count`` (the
    0-based index of the batch about to be drawn)."""
    stream, count = draws_so_far(generator)
    if count + 1 > _COUNT_MASK:
        raise ConfigError(f"task 'permuted_digits' counts at most {_COUNT_MASK} training batches per run")
    generator.manual_seed((_TAG << _TAG_SHIFT) | (stream << _COUNT_BITS) | (count + 1))
    return count


@register_task("permuted_digits")
@dataclass
class PermutedDigits(Digits):
    r"""A sequence of ``phases`` digit-classification tasks; phase k relabels every digit y as
    π_k(y), with π_k a random permutation of the ten classes (π_0 the identity), and lasts
    ``phase_steps`` (K) training batches. Training batch number t (0-based) belongs to phase
    ``min(t // K, phases - 1)``: a run of ``phases * K`` steps sees each phase for K steps.

    Rows: the digits split of ``Digits(data_seed)`` (70 / 15 / 15, disjoint). Validation and
    test carry the *final* phase's labels, π_{phases-1}(y): their accuracy is the accuracy on the
    last task after K steps of it, the plasticity metric (a network that lost plasticity fits the
    last phase worse than the first). ``first_phase`` splits ("val@first", "test@first") score
    the same rows with phase 0's labels.

    How the task knows the step: ``train_batch(batch_size, generator)`` is given no step, so the
    task counts its draws in the generator itself: each call reads the count from the generator's
    seed (``draws_so_far``), reseeds the generator with the count plus one (and a 32-bit id of the
    run's stream, so runs with different seeds draw different batches) and draws the batch from
    it. The count is thus part of the generator's state, which the trainer checkpoints and
    restores, so a run resumed after a kill continues at the same phase and the same batches; the
    task object itself holds no state (one task may serve many runs at once), and a fresh
    generator starts at phase 0. Batch size <= 0 gives every training row in a fixed order (one
    draw, counted).

    Metric: accuracy on the final phase. Chance: 0.1.
    """

    name: ClassVar[str] = "permuted_digits"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    phases: int = 10
    phase_steps: int = 100
    data_seed: int = 0

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", "test", "val@first", "test@first")

    @property
    def total_steps(self) -> int:
        """Steps of a run that sees every phase for ``phase_steps`` steps."""
        return self.phases * self.phase_steps

    def validate(self) -> None:
        super().validate()  # data_seed
        if self.phases < 1:
            raise ConfigError(f"task {self.name!r}: phases must be >= 1, got {self.phases}")
        if not 1 <= self.phase_steps <= _COUNT_MASK:
            raise ConfigError(f"task {self.name!r}: phase_steps must be in [1, {_COUNT_MASK}], got {self.phase_steps}")

    def phase_of(self, t: int) -> int:
        """The phase of training batch number t (0-based)."""
        return min(t // self.phase_steps, self.phases - 1)

    def permutation(self, phase: int) -> Tensor:
        """π_phase as a tensor p with π(y) = p[y] (phase 0: the identity)."""
        if not 0 <= phase < self.phases:
            raise ConfigError(f"task {self.name!r}: phase must be in [0, {self.phases}), got {phase}")
        if phase == 0:
            return torch.arange(10)
        digest = hashlib.sha256(f"permuted_digits/perm/{self.data_seed}/{phase}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        return torch.randperm(10, generator=gen)

    def _rows(self, index: Tensor, phase: int) -> Batch:
        x, y = _load_digits()
        return Batch(x[index], self.permutation(phase)[y[index]])

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        phase = self.phase_of(advance(generator))
        train = self.split_indices("train")
        if batch_size <= 0:
            return self._rows(train, phase)
        return self._rows(train[torch.randint(0, len(train), (batch_size,), generator=generator)], phase)

    def _make_eval_set(self, split: str) -> Batch:
        base, _, which = split.partition("@")
        phase = 0 if which == "first" else self.phases - 1
        return self._rows(self.split_indices(base), phase)

    def oracle(self, batch: Batch) -> Tensor:
        raise NotImplementedError("permuted_digits is learned from digits: it has no oracle")
