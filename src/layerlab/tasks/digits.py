"""Digits: scikit-learn's bundled 8x8 handwritten digits, a small vector classification task."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .registry import register_task
from .base import Batch, Task


@lru_cache(maxsize=1)
def _load_digits() -> tuple[Tensor, Tensor]:
    """All 1797 images as float32 features in [0, 1] (N, 64) and int64 labels (N,)."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    data = load_digits()
    x = torch.from_numpy(data.data).float() / 16.0
    y = torch.from_numpy(data.target).long()
    return x, y


@lru_cache(maxsize=8)
def _split_indices(data_seed: int) -> dict[str, Tensor]:
    from sklearn.model_selection import train_test_split

    _, y = _load_digits()
    index = torch.arange(len(y)).numpy()
    labels = y.numpy()
    train, rest = train_test_split(index, test_size=0.3, stratify=labels, random_state=data_seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=data_seed)
    return {name: torch.from_numpy(ix).long() for name, ix in (("train", train), ("val", val), ("test", test))}


@register_task("digits")
@dataclass
class Digits(Task):
    """Handwritten digit classification on scikit-learn's bundled ``load_digits`` (the UCI
    optical-recognition digits: 1797 images of 8x8 pixels, no download needed).

    Inputs are the 64 pixel intensities scaled from 0..16 to [0, 1] (float32); the target is
    the digit 0..9 (int64, one per row, no mask). The split is stratified by digit,
    70 / 15 / 15 into train / val / test (``train_test_split`` with ``random_state=data_seed``),
    disjoint as sets of rows. ``train_batch`` samples training rows uniformly with replacement;
    a batch size <= 0 gives the whole training set (full batch) in a fixed order.

    Metric: accuracy. Chance: 0.1 (a uniform guess among ten digits).
    """

    name: ClassVar[str] = "digits"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    data_seed: int = 0

    @property
    def input_dim(self) -> int:
        return 64

    @property
    def n_outputs(self) -> int:
        return 10

    @property
    def chance(self) -> float:
        return 0.1

    def validate(self) -> None:
        if not 0 <= self.data_seed < 2**32:
            raise ConfigError(
                f"task {self.name!r}: data_seed must be in [0, 2**32) for scikit-learn, got {self.data_seed}"
            )

    def split_indices(self, split: str) -> Tensor:
        """Row indices (into the 1797 images) of "train", "val" or "test"."""
        return _split_indices(self.data_seed)[split]

    def _rows(self, index: Tensor) -> Batch:
        x, y = _load_digits()
        return Batch(x[index], y[index])

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        train = self.split_indices("train")
        if batch_size <= 0:
            return self._rows(train)
        return self._rows(train[torch.randint(0, len(train), (batch_size,), generator=generator)])

    def _make_eval_set(self, split: str) -> Batch:
        return self._rows(self.split_indices(split))

    def oracle(self, batch: Batch) -> Tensor:
        raise NotImplementedError(
            "digits has no rule to compute labels from pixels: it is a learned task without an oracle"
        )
