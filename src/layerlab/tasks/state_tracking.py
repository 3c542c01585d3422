"""State tracking: running parity, running counts modulo m and permutation composition (word
problems over S_n / A_n), each scored at every position and evaluated beyond its training length."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError, unknown_name
from .registry import register_task
from .base import Batch, GeneratedTask


@dataclass
class StateTracking(GeneratedTask):
    """Shared machinery: a sequence of ``length`` tokens, a target at every position (a running
    state), every position scored, and length extrapolation.

    ``extrapolate`` lists multiples of ``length``: each adds a split ``test@{k * length}``
    drawn like the test split at the longer length (default 2L and 4L). Subclasses give
    ``n_symbols`` (tokens and states share one alphabet) and ``running_state(inputs)``.

    Metric: accuracy over all positions. Chance: ``1 / n_symbols``.
    """

    input_kind: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    length: int = 64
    extrapolate: tuple[int, ...] = (2, 4)
    n_eval: int = 1000
    data_seed: int = 0

    @property
    def n_symbols(self) -> int:
        raise NotImplementedError

    def running_state(self, inputs: Tensor) -> Tensor:
        """The target at every position: the state after reading the prefix up to it."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.n_symbols

    @property
    def n_outputs(self) -> int:
        return self.n_symbols

    @property
    def eval_lengths(self) -> tuple[int, ...]:
        return tuple(k * self.length for k in self.extrapolate)

    @property
    def max_length(self) -> int:
        return max((self.length, *self.eval_lengths))

    @property
    def chance(self) -> float:
        return 1.0 / self.n_symbols

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", "test", *(f"test@{n}" for n in self.eval_lengths))

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.length < 1:
            raise ConfigError(f"{where}: length must be >= 1, got {self.length}")
        bad = [k for k in self.extrapolate if not (isinstance(k, int) and k >= 2)]
        if bad or len(set(self.extrapolate)) != len(self.extrapolate):
            raise ConfigError(
                f"{where}: extrapolate lists distinct integer multiples >= 2 of the training length "
                f"(e.g. [2, 4] for {2 * self.length} and {4 * self.length}); got {list(self.extrapolate)}"
            )
        super().validate()

    def _split_length(self, split: str) -> int:
        if "@" not in split:
            return self.length
        n = int(split.split("@", 1)[1])
        if n not in self.eval_lengths:
            raise ConfigError(f"task {self.name!r} has no split {split!r}; splits: {', '.join(self.eval_splits)}")
        return n

    def draw(self, n: int, generator: torch.Generator, split: str = "train") -> Batch:
        length = self._split_length(split)
        inputs = torch.randint(0, self.n_symbols, (n, length), generator=generator)
        return Batch(inputs, self.running_state(inputs), torch.ones(n, length, dtype=torch.bool))

    def oracle(self, batch: Batch) -> Tensor:
        return self.running_state(batch.inputs)


@dataclass
class _RunningSum(StateTracking):
    """The target at every position t is ``(x_1 + ... + x_t) mod m`` for inputs in ``0 .. m-1``."""

    @property
    def modulus(self) -> int:
        raise NotImplementedError

    @property
    def n_symbols(self) -> int:
        return self.modulus

    def running_state(self, inputs: Tensor) -> Tensor:
        return inputs.cumsum(dim=1) % self.modulus


@register_task("parity")
@dataclass
class Parity(_RunningSum):
    """Running parity: inputs are bits, and the target at every position t is the parity
    ``(x_1 + ... + x_t) mod 2`` of the prefix. A classic state-tracking probe: it needs a
    state that flips at every 1, which self-attention finds hard (Hahn 2020, "Theoretical
    Limitations of Self-Attention in Neural Sequence Models"), while recurrences do it easily.

    Every position is scored (mask all True). Extra splits ``test@{k L}`` for each
    ``k`` in ``extrapolate`` (default 2L and 4L) measure length extrapolation.

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

    Every position is scored (mask all True). Extra splits ``test@{k L}`` for each
    ``k`` in ``extrapolate`` (default 2L and 4L) measure length extrapolation.

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


@lru_cache(maxsize=None)
def permutation_group(name: str) -> tuple[tuple[tuple[int, ...], ...], Tensor]:
    """The elements of S_n or A_n (``name`` "S3", "A5", ...) in lexicographic order (the identity
    first) and the Cayley table ``table[a, b]`` = index of ``b ∘ a`` (a applied first, then b)."""
    if len(name) != 2 or name[0] not in "SA" or name[1] not in "2345":
        raise unknown_name("permutation group", name, GROUPS)
    n = int(name[1])

    def even(p: tuple[int, ...]) -> bool:
        inversions = sum(p[i] > p[j] for i in range(n) for j in range(i + 1, n))
        return inversions % 2 == 0

    elements = tuple(p for p in itertools.permutations(range(n)) if name[0] == "S" or even(p))
    index = {p: i for i, p in enumerate(elements)}
    # on the CPU explicitly: the first call may come from inside a meta-device context (sizing)
    table = torch.tensor([[index[tuple(b[a[i]] for i in range(n))] for b in elements] for a in elements],
                         device="cpu")
    return elements, table


GROUPS = ("S2", "S3", "S4", "S5", "A3", "A4", "A5")


@register_task("permutation")
@dataclass
class PermutationComposition(StateTracking):
    """Word problems over a permutation group: inputs are group elements ``g_1 .. g_L`` and the
    target at every position t is the composition ``g_t ∘ ... ∘ g_2 ∘ g_1`` (``g_1`` applied
    first), as in Merrill, Petty & Sabharwal, "The Illusion of State in State-Space Models"
    (2024, arXiv:2404.08819) and Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through
    Negative Eigenvalues" (2024, arXiv:2411.12537).

    ``group`` is "S3" (6 elements, solvable), "A5" (60 elements, the smallest non-solvable
    group: its word problem is NC^1-complete, beyond any constant-depth circuit), or
    S2, S4, S5, A3, A4. Tokens index the elements in lexicographic order of their one-line
    notation (token 0 is the identity). Every position is scored; extra splits ``test@{k L}``
    for ``k`` in ``extrapolate`` measure length extrapolation.

    Metric: accuracy over all positions. Chance: ``1 / |G|``.
    """

    name: ClassVar[str] = "permutation"

    group: str = "S3"

    @property
    def n_symbols(self) -> int:
        return len(permutation_group(self.group)[0])

    def validate(self) -> None:
        if self.group not in GROUPS:
            raise unknown_name("permutation group", self.group, GROUPS)
        super().validate()

    def running_state(self, inputs: Tensor) -> Tensor:
        table = permutation_group(self.group)[1].to(inputs.device)
        state = torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)  # identity
        out = torch.empty_like(inputs)
        for t in range(inputs.shape[1]):
            state = table[state, inputs[:, t]]
            out[:, t] = state
        return out
