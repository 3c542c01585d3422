"""Where a training run writes what it measures. The store implements the same interface."""
from __future__ import annotations

from typing import Protocol


class Recorder(Protocol):
    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        """Record metrics of `split` ("train", "val", ...) at optimizer step `step`."""

    def flush(self) -> None:
        """Make everything logged so far durable."""

    def truncate(self, after_step: int) -> None:
        """Forget metrics logged after `after_step` (a resumed run will log them again)."""

    def event(self, message: str) -> None:
        """Note something that happened to the run (a corrupt checkpoint, a restart)."""


class MemoryRecorder:
    """Keeps everything in lists: for library use and tests."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, str, float]] = []
        self.events: list[str] = []

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        self.rows.extend((step, split, k, float(v)) for k, v in metrics.items())

    def flush(self) -> None:
        pass

    def truncate(self, after_step: int) -> None:
        self.rows = [r for r in self.rows if r[0] <= after_step]

    def event(self, message: str) -> None:
        self.events.append(message)

    def series(self, split: str, name: str) -> list[tuple[int, float]]:
        return [(s, v) for s, sp, n, v in self.rows if sp == split and n == name]
