"""Where a training run writes what it measures. The store implements the same interface."""
from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Recorder(Protocol):
    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        """Record metrics of `split` ("train", "val", ...) at optimizer step `step`."""

    def flush(self) -> None:
        """Make everything logged so far durable."""

    def truncate(self, after_step: int) -> None:
        """Forget metrics logged after `after_step` (a resumed run will log them again)."""

    def event(self, message: str) -> None:
        """Note something that happened to the run (a corrupt checkpoint, a restart)."""

    def artifact(self, step: int, name: str, array: Tensor) -> None:
        """Keep an array a probe measured at `step` (a spectrum, a kernel), losslessly."""

    def load_artifact(self, step: int, name: str) -> Tensor | None:
        """The array recorded as `name` at `step`, or None."""


class MemoryRecorder:
    """Keeps everything in lists: for library use and tests."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, str, float]] = []
        self.events: list[str] = []
        self.arrays: dict[tuple[int, str], Tensor] = {}

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        self.rows.extend((step, split, k, float(v)) for k, v in metrics.items())

    def flush(self) -> None:
        pass

    def truncate(self, after_step: int) -> None:
        self.rows = [r for r in self.rows if r[0] <= after_step]
        self.arrays = {k: v for k, v in self.arrays.items() if k[0] <= after_step}

    def event(self, message: str) -> None:
        self.events.append(message)

    def artifact(self, step: int, name: str, array: Tensor) -> None:
        self.arrays[(step, name)] = array.detach().cpu().clone()

    def load_artifact(self, step: int, name: str) -> Tensor | None:
        return self.arrays.get((step, name))

    def series(self, split: str, name: str) -> list[tuple[int, float]]:
        return [(s, v) for s, sp, n, v in self.rows if sp == split and n == name]
