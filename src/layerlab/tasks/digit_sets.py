"""Sets of handwritten digits: count how many distinct digits a set holds (a set-input task)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Batch, Task, split_generator
from .digits import _load_digits, _split_indices
from .registry import register_task


@register_task("distinct_digits")
@dataclass
class DistinctDigits(Task):
    """Count the distinct digits in a set of ``set_size`` 8x8 digit images.

    The small analogue of the Set Transformer's "counting unique characters" (Lee et al. 2018,
    arXiv:1810.00825, Section 5.2: sets of Omniglot images, target the number of distinct
    characters), on scikit-learn's bundled digits (``digits`` task: 64 pixels in [0, 1]).

    A set is drawn as in the paper: the count c uniform in 1..n (n = ``set_size``); c distinct
    digits uniform among the ten; one image of each, then n - c more images whose digits are
    uniform among those c; the n elements in a uniformly random order; each image uniform among
    its digit's images of the split. Inputs (B, n, 64) float32 (``input_kind = "set"``), target
    c - 1 (int64, class k means k + 1 distinct digits), no mask.

    Splits: the images of the ``digits`` task's stratified 70/15/15 split (``data_seed``), so no
    image of a validation or test set appears in any training set; ``train_batch`` draws fresh
    sets (batch_size >= 1), ``eval_set`` ``n_eval`` fixed sets per split.

    Metric: accuracy. Chance: 1/n (c is uniform, so every constant or random guess scores 1/n).
    """

    name: ClassVar[str] = "distinct_digits"
    input_kind: ClassVar[str] = "set"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    set_size: int = 6
    n_eval: int = 1000
    data_seed: int = 0

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if isinstance(self.set_size, bool) or not 2 <= self.set_size <= 10:
            raise ConfigError(f"{where}: set_size must be in 2..10 (at most ten distinct digits), got {self.set_size}")
        if self.n_eval < 1:
            raise ConfigError(f"{where}: n_eval must be >= 1, got {self.n_eval}")
        if not 0 <= self.data_seed < 2**32:
            raise ConfigError(f"{where}: data_seed must be in [0, 2**32) for scikit-learn, got {self.data_seed}")

    # --- sizes --------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """Features of one element (64 pixels)."""
        return 64

    @property
    def n_outputs(self) -> int:
        return self.set_size

    @property
    def chance(self) -> float:
        return 1.0 / self.set_size

    # --- data ---------------------------------------------------------------------------
    def _by_digit(self, split: str) -> list[Tensor]:
        """Image row indices of `split`, one tensor per digit."""
        _, y = _load_digits()
        index = _split_indices(self.data_seed)[split]
        return [index[y[index] == d] for d in range(10)]

    def draw(self, n: int, split: str, gen: torch.Generator) -> Batch:
        """`n` sets from the images of `split` ("train", "val" or "test")."""
        x, _ = _load_digits()
        pools = self._by_digit(split)
        size = self.set_size
        counts = torch.randint(1, size + 1, (n,), generator=gen)
        digits = torch.rand(n, 10, generator=gen).argsort(dim=1)  # a random order of the ten digits per set
        # element j < c takes the j-th chosen digit; the rest a uniform one of the c chosen
        slot = torch.arange(size).expand(n, size)
        extra = (torch.rand(n, size, generator=gen) * counts[:, None]).long()
        which = torch.where(slot < counts[:, None], slot, extra)
        order = torch.rand(n, size, generator=gen).argsort(dim=1)  # shuffle the elements
        labels = digits.gather(1, which.gather(1, order))
        u = torch.rand(n, size, generator=gen)
        rows = torch.empty(n, size, dtype=torch.long)
        for d in range(10):
            hit = labels == d
            pool = pools[d]
            rows[hit] = pool[(u[hit] * len(pool)).long().clamp_(max=len(pool) - 1)]
        return Batch(x[rows], counts - 1)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ConfigError(f"task {self.name!r} draws fresh sets and has no finite training set: "
                              f"batch_size must be >= 1, got {batch_size}")

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_batch_size(batch_size)
        return self.draw(batch_size, "train", generator)

    def _make_eval_set(self, split: str) -> Batch:
        return self.draw(self.n_eval, split, split_generator(self.name, split, self.data_seed))

    def oracle(self, batch: Batch) -> Tensor:
        """The number of distinct digits minus one, reading each image's digit from the data set."""
        labels = image_labels(batch.inputs.float())
        seen = torch.zeros(labels.shape[0], 10, dtype=torch.bool)
        seen.scatter_(1, labels, True)
        return seen.sum(1) - 1


def image_labels(images: Tensor) -> Tensor:
    """The digit of each image (..., 64), found by exact match in the digits data set."""
    x, y = _load_digits()
    flat = images.reshape(-1, 64)
    keys = {bytes(row.numpy().tobytes()): int(label) for row, label in zip(x, y)}
    try:
        found = [keys[bytes(row.numpy().tobytes())] for row in flat.contiguous()]
    except KeyError:
        raise ConfigError("image_labels: an image is not one of the digits data set's images") from None
    return torch.tensor(found, dtype=torch.long).reshape(images.shape[:-1])
