"""Registered measurements: what a closed-form claim card runs instead of an arena suite.

A measurement is a function ``fn(seed: int, **options) -> dict[str, float]`` that computes, for one
seed, quantities to compare with a closed form (typically an ``error``). A card names it::

    [measure]
    name = "selu_fixed_point"
    options = { depth = 32 }
    seeds = [0, 1, 2, 3, 4]

and its rule (usually ``tolerance``) reads the per-seed values of ``[metric] name`` (default: the
measurement's own ``metric``). Register one with ``@register_measure("name", metric="error",
paper=Paper(...))`` in a module of this package (one file per paper); every module here is
imported when a measurement is looked up.

Measurements live in one ``layerlab.registry.Registry`` (kind "measure"), the pattern blocks, tasks
and probes use; an entry's ``meta`` holds its default ``metric`` and ``higher_is_better``.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from ...registry import Entry, Paper, Registry


@dataclass(frozen=True)
class Measurement:
    """A registered measurement, callable as ``m(seed, **options)`` with its options checked."""

    name: str
    fn: Callable[..., dict[str, float]]
    metric: str  # the key the rule reads by default
    higher_is_better: bool
    paper: Paper | None

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options and their defaults."""
        params = list(inspect.signature(self.fn).parameters.values())[1:]  # skip seed
        return {p.name: None if p.default is p.empty else p.default for p in params
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def check_options(self, options: dict[str, Any], where: str) -> None:
        valid = self.options
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"{where}: measurement {self.name!r} got unknown option(s) "
                              f"{', '.join(map(repr, unknown))}; valid options: "
                              f"{', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}")

    def __call__(self, seed: int, **options: Any) -> dict[str, float]:
        self.check_options(options, "measurement")
        out = self.fn(seed, **options)
        return {k: float(v) for k, v in out.items()}


MEASURES: Registry[Entry] = Registry("measure", what="measurement")


def register_measure(name: str, *, metric: str = "error", higher_is_better: bool = False,
                     paper: Paper | None = None) -> Callable[[Callable[..., dict[str, float]]], Callable[..., dict[str, float]]]:
    """Function decorator: make ``fn(seed, **options)`` a measurement a card can name."""
    def deco(fn: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        MEASURES.add(name, fn, paper=paper, metric=metric, higher_is_better=higher_is_better)
        return fn

    return deco


def _load_builtin() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_measure(name: str) -> Measurement:
    """The measurement registered as `name`; an unknown name suggests close ones."""
    _load_builtin()
    e = MEASURES.entry(name)
    return Measurement(e.name, e.obj, e.meta["metric"], e.meta["higher_is_better"], e.paper)


def measure_names() -> list[str]:
    _load_builtin()
    return MEASURES.names()
