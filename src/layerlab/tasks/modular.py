"""Modular arithmetic on a fixed table of pairs: the "grokking" setting."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, unknown_name
from .registry import register_task
from .base import Batch, Task

OPS = ("+", "-", "*", "/")
ENCODINGS = ("tokens", "onehot")


def is_prime(n: int) -> bool:
    """Trial division; fine for the moduli used here."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


@lru_cache(maxsize=None)
def _inverses(p: int) -> Tensor:
    """``b^(p-2) mod p`` for every b in ``0 .. p-1``: the inverse of b when p is prime."""
    return torch.tensor([pow(b, p - 2, p) for b in range(p)], dtype=torch.long, device="cpu")


@register_task("modular")
@dataclass
class ModularArithmetic(Task):
    """Binary operations modulo a prime, from Power et al. 2022, "Grokking: Generalization
    Beyond Overfitting on Small Algorithmic Datasets" (arXiv:2201.02177).

    Every example is the sequence ``[a, OP, b, EQ]`` with ``a, b`` in ``0 .. p-1`` (``b`` in
    ``1 .. p-1`` for division), ``OP = p`` and ``EQ = p + 1`` (``vocab_size = p + 2``), and the
    model must predict ``c = a op b mod p`` at the last position (the mask is True there
    only; targets elsewhere are 0 and never scored). Division is ``a * b^(p-2) mod p``
    (Fermat's inverse), so it needs a prime p; the other operations accept any p >= 2.

    The whole table of pairs is shuffled by a generator seeded with ``data_seed``: its first
    ``train_fraction`` is the training set, and the rest is cut in half into validation and
    test, so the three are disjoint by construction. ``train_batch`` samples training pairs
    uniformly with replacement; a batch size <= 0 or >= the training set's size gives the
    whole training set (full batch) in a fixed order.

    Outputs: the model predicts a residue, ``n_outputs = p`` (not ``p + 2``: OP and EQ are
    never answers). Metric: accuracy at the answer position. Chance: ``1 / p``.

    ``encoding = "onehot"`` gives the same pairs and splits as feature vectors for the classifier
    backbone: the concatenated one-hot codes of ``a`` and ``b`` (``input_dim = 2p``) with the
    residue as the class, the MLP setting of Liu et al. 2022 ("Towards Understanding Grokking",
    arXiv:2205.10343) and of "Grokking at the Edge of Numerical Stability" (arXiv:2501.04697).
    """

    name: ClassVar[str] = "modular"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    p: int = 97
    op: str = "+"
    train_fraction: float = 0.5
    data_seed: int = 0
    encoding: str = "tokens"

    def __post_init__(self) -> None:
        super().__post_init__()
        pairs = self._all_pairs()
        gen = torch.Generator().manual_seed(self.data_seed)
        self._pairs = pairs[torch.randperm(len(pairs), generator=gen)]
        self._inputs, self._targets, self._mask = self._encode(self._pairs)

    # --- sizes ----------------------------------------------------------------------
    @property
    def input_kind(self) -> str:
        return "vector" if self.encoding == "onehot" else "tokens"

    @property
    def input_dim(self) -> int:
        return 2 * self.p

    @property
    def op_token(self) -> int:
        return self.p

    @property
    def eq_token(self) -> int:
        return self.p + 1

    @property
    def vocab_size(self) -> int:
        return self.p + 2

    @property
    def n_outputs(self) -> int:
        return self.p

    @property
    def max_length(self) -> int:
        return 4

    @property
    def chance(self) -> float:
        return 1.0 / self.p

    @property
    def n_pairs(self) -> int:
        """Size of the whole table."""
        return self.p * (self.p - 1 if self.op == "/" else self.p)

    @property
    def n_train(self) -> int:
        return int(self.train_fraction * self.n_pairs)

    @property
    def n_val(self) -> int:
        return (self.n_pairs - self.n_train) // 2

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.encoding not in ENCODINGS:
            raise unknown_name("modular encoding", self.encoding, ENCODINGS)
        if self.op not in OPS:
            raise ConfigError(f"{where}: op must be one of {', '.join(map(repr, OPS))}, got {self.op!r}")
        if self.p < 2:
            raise ConfigError(f"{where}: p must be >= 2, got {self.p}")
        if self.op == "/" and not is_prime(self.p):
            raise ConfigError(
                f"{where}: division needs a prime modulus (every b != 0 must have an inverse); "
                f"p = {self.p} is not prime"
            )
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"{where}: train_fraction must be strictly between 0 and 1, got {self.train_fraction}")
        n_rest = self.n_pairs - self.n_train
        if self.n_train < 1 or n_rest - n_rest // 2 < 1 or n_rest // 2 < 1:
            raise ConfigError(
                f"{where}: {self.n_pairs} pairs with train_fraction {self.train_fraction} leave an "
                "empty train, validation or test set; change p or train_fraction"
            )

    # --- data -----------------------------------------------------------------------
    def _all_pairs(self) -> Tensor:
        a = torch.arange(self.p)
        b = torch.arange(1 if self.op == "/" else 0, self.p)
        return torch.cartesian_prod(a, b)

    def apply(self, a: Tensor, b: Tensor) -> Tensor:
        """``a op b mod p``, elementwise."""
        p = self.p
        if self.op == "+":
            return (a + b) % p
        if self.op == "-":
            return (a - b) % p
        if self.op == "*":
            return (a * b) % p
        return (a * _inverses(p)[b]) % p

    def _encode(self, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        n = len(pairs)
        a, b = pairs[:, 0], pairs[:, 1]
        if self.encoding == "onehot":
            codes = torch.cat([F.one_hot(a, self.p), F.one_hot(b, self.p)], dim=1).float()
            return codes, self.apply(a, b), None
        inputs = torch.stack(
            [a, torch.full((n,), self.op_token), b, torch.full((n,), self.eq_token)], dim=1
        ).long()
        targets = torch.zeros(n, 4, dtype=torch.long)
        targets[:, 3] = self.apply(a, b)
        mask = torch.zeros(n, 4, dtype=torch.bool)
        mask[:, 3] = True
        return inputs, targets, mask

    def _range(self, split: str) -> slice:
        n_train, n_val = self.n_train, self.n_val
        ranges = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val),
                  "test": slice(n_train + n_val, self.n_pairs)}
        if split not in ranges:
            raise ConfigError(f"task {self.name!r} has no split {split!r}; splits: train, val, test")
        return ranges[split]

    def split_pairs(self, split: str) -> Tensor:
        """The ``(a, b)`` pairs of a split ("train", "val" or "test"), shape (n, 2)."""
        return self._pairs[self._range(split)]

    def _rows(self, index: slice | Tensor) -> Batch:
        mask = None if self._mask is None else self._mask[index]
        return Batch(self._inputs[index], self._targets[index], mask)

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if batch_size <= 0 or batch_size >= self.n_train:
            return self._rows(self._range("train"))
        return self._rows(torch.randint(0, self.n_train, (batch_size,), generator=generator))

    def _make_eval_set(self, split: str) -> Batch:
        return self._rows(self._range(split))

    def oracle(self, batch: Batch) -> Tensor:
        """``a op b mod p`` at the answer position (0 elsewhere); the class for one-hot inputs."""
        x = batch.inputs
        if self.encoding == "onehot":
            return self.apply(x[:, : self.p].argmax(1), x[:, self.p:].argmax(1))
        out = torch.zeros_like(x)
        out[:, 3] = self.apply(x[:, 0], x[:, 2])
        return out
