"""Register blocks by (kind, name) and build them by name.

A registered block carries the paper it comes from. Every block is built as
``cls(d_model, **options)``; unknown options are rejected with the valid ones listed.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from torch import nn

from .errors import ConfigError, unknown_name

KINDS = ("mixer", "channel", "norm", "activation")


@dataclass(frozen=True)
class Paper:
    """Where a block comes from."""

    title: str
    year: int
    arxiv: str | None = None

    def cite(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.title} ({self.year}{arxiv})"


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    cls: type
    paper: Paper | None

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options the block accepts, with their defaults."""
        sig = inspect.signature(self.cls.__init__)
        out = {}
        for p in list(sig.parameters.values())[2:]:  # skip self, d_model
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                out[p.name] = None if p.default is p.empty else p.default
        return out

    def width_multiple(self, options: dict[str, Any]) -> int:
        """The block's widths must be multiples of this (e.g. its head count). A block class
        states it by a classmethod ``width_multiple(**options) -> int``; absent, 1."""
        rule = getattr(self.cls, "width_multiple", None)
        if rule is None:
            return 1
        valid = self.options
        return int(rule(**{k: v for k, v in {**valid, **options}.items() if k in valid}))


_REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
T = TypeVar("T", bound=type)


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise unknown_name("block kind", kind, KINDS)


def register(kind: str, name: str, *, paper: Paper | None = None) -> Callable[[T], T]:
    """Class decorator: make the block buildable as ``build(kind, name, d_model, ...)``."""
    _check_kind(kind)

    def deco(cls: T) -> T:
        if name in _REGISTRY[kind] and _REGISTRY[kind][name].cls is not cls:
            raise ConfigError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = Entry(kind, name, cls, paper)
        cls.registry_name = name
        cls.paper = paper
        return cls

    return deco


def _load_builtin() -> None:
    from . import blocks  # noqa: F401  (registers the built-in blocks)


def get(kind: str, name: str) -> Entry:
    _check_kind(kind)
    _load_builtin()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise unknown_name(f"{kind}", name, _REGISTRY[kind]) from None


def names(kind: str) -> list[str]:
    """Registered block names of one kind, sorted."""
    _check_kind(kind)
    _load_builtin()
    return sorted(_REGISTRY[kind])


def entries() -> list[Entry]:
    _load_builtin()
    return [e for k in KINDS for _, e in sorted(_REGISTRY[k].items())]


def build(kind: str, name: str, d_model: int, **options: Any) -> nn.Module:
    """Build a registered block: ``build("mixer", "attention", 64, n_heads=4)``."""
    entry = get(kind, name)
    valid = entry.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"{kind} {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}"
        )
    return entry.cls(d_model, **options)
