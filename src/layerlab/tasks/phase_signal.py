"""Phase-carrying signals: classify the phase offset between a tone and its second harmonic."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Batch, Task, split_generator
from .registry import register_task


@register_task("phase_signal")
@dataclass
class PhaseSignal(Task):
    r"""Which of ``classes`` phase offsets couples a tone to its second harmonic?

    A window of ``length`` real samples, t = 0..n-1::

        x(t) = a₁ cos(ωt + φ) + a₂ cos(2ωt + 2φ + ψ_c) + ε_t,    ψ_c = 2π c / C,  c ∈ {0..C-1}

    with ω = 2π f / n, f ~ U[1, n/4] cycles per window (not a whole number: the window is not
    periodic), φ ~ U[0, 2π) (a random time shift: a nuisance), a₁, a₂ ~ U[0.5, 1.5], ε_t ~ N(0,
    ``noise``²). The class c (uniform) lives only in the phase coupling ψ = φ₂ - 2φ₁ between the
    components, not in their amplitudes or frequencies: the task of a network that must keep
    phase (the motivation of complex-valued networks, Dramsch et al. 2019, arXiv:1905.12321).

    Inputs (B, n) float32 (a vector task), target c (int64), no mask. Splits: fresh training draws
    (batch_size >= 1), ``n_eval`` fixed validation and test signals from their own generator
    streams (``data_seed``); continuous draws, checked disjoint by the tests.
    Metric: accuracy. Chance: 1/C (uniform classes).
    """

    name: ClassVar[str] = "phase_signal"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    length: int = 32
    classes: int = 4
    noise: float = 0.3
    n_eval: int = 1000
    data_seed: int = 0

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.length < 8:
            raise ConfigError(f"{where}: length must be >= 8 (at least two cycles of the harmonic), got {self.length}")
        if self.classes < 2:
            raise ConfigError(f"{where}: classes must be >= 2, got {self.classes}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"{where}: noise must be finite and >= 0, got {self.noise}")
        if self.n_eval < 1:
            raise ConfigError(f"{where}: n_eval must be >= 1, got {self.n_eval}")

    @property
    def input_dim(self) -> int:
        return self.length

    @property
    def n_outputs(self) -> int:
        return self.classes

    @property
    def chance(self) -> float:
        return 1.0 / self.classes

    def draw(self, n: int, gen: torch.Generator) -> Batch:
        """`n` signals and their classes."""
        L = self.length
        c = torch.randint(self.classes, (n,), generator=gen)
        f = 1 + (L / 4 - 1) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
        phi = 2 * math.pi * torch.rand(n, 1, generator=gen, dtype=torch.float64)
        a = 0.5 + torch.rand(n, 2, generator=gen, dtype=torch.float64)
        eps = self.noise * torch.randn(n, L, generator=gen, dtype=torch.float64)
        t = torch.arange(L, dtype=torch.float64)
        w = 2 * math.pi * f / L
        psi = 2 * math.pi * c[:, None].double() / self.classes
        x = a[:, :1] * torch.cos(w * t + phi) + a[:, 1:] * torch.cos(2 * w * t + 2 * phi + psi) + eps
        return Batch(x.float(), c)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ConfigError(f"task {self.name!r} draws fresh signals and has no finite training set: "
                              f"batch_size must be >= 1, got {batch_size}")

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_batch_size(batch_size)
        return self.draw(batch_size, generator)

    def _make_eval_set(self, split: str) -> Batch:
        return self.draw(self.n_eval, split_generator(self.name, split, self.data_seed))

    def oracle(self, batch: Batch) -> Tensor:
        raise NotImplementedError("phase_signal's labels are not a function of the noisy samples alone (the noise "
                                  "can hide the phase): it has no exact oracle")
