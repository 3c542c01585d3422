"""Register things by name and find them again: blocks by (kind, name), and the one small
``Registry`` pattern that blocks, tasks (``layerlab.tasks``) and probes (``layerlab.lens.probes``)
all use.

A ``Registry`` maps a name to an ``Entry``: the registered object (a class or a function), the
paper it comes from, free metadata (a probe's option check and what it captures, say) and the
file that defines it. Registering a name twice is an error unless it is the same object again
(a module imported twice); an unknown name is an error that suggests the closest names.

A registered block is built as ``cls(d_model, **options)``; unknown options are rejected with
the valid ones listed.

Layering: this module is floor 1 (DESIGN.md) and imports nothing above it. The built-in blocks
(floor 3) register themselves when ``layerlab.blocks`` is imported, and the package facade
``layerlab/__init__.py`` imports it right after this module, so ``layerlab.names("mixer")`` and
``layerlab.registry.get(...)`` see every built-in block once anything of layerlab is imported
(Python runs the facade before any submodule). The registry itself never imports the blocks.
"""
from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from torch import nn

from .errors import ConfigError, unknown_name

# Registered kinds. A new kind is one more name here: its registry is made below. Blocks are built
# as ``cls(d_model, **options)``; a "method" (a training method, ``layerlab.methods``) has no width
# and is built as ``cls(**options)`` by ``layerlab.methods.build_method``.
KINDS: tuple[str, ...] = ("mixer", "channel", "norm", "activation", "method")

_PACKAGE_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Paper:
    """Where a block comes from."""

    title: str
    year: int
    arxiv: str | None = None

    def cite(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.title} ({self.year}{arxiv})"


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


@dataclass(frozen=True)
class Entry:
    """One registered object: its kind ("mixer", "task", "probe", ...), name, the object itself,
    its paper and free metadata."""

    kind: str
    name: str
    obj: Any
    paper: Paper | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def source_file(self) -> str | None:
        """The file that defines the object: relative to the layerlab package (e.g.
        ``blocks/mixers/attention.py``), absolute for objects defined elsewhere, None if unknown."""
        module = sys.modules.get(getattr(self.obj, "__module__", ""), None)
        path = getattr(module, "__file__", None)
        if path is None:
            return None
        path = Path(path).resolve()
        try:
            return path.relative_to(_PACKAGE_ROOT).as_posix()
        except ValueError:
            return str(path)


class BlockEntry(Entry):
    """A registered block class, built as ``cls(d_model, **options)``."""

    @property
    def cls(self) -> type:
        return self.obj

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


class MethodEntry(BlockEntry):
    """A registered training method, built as ``cls(**options)`` (no width)."""

    @property
    def options(self) -> dict[str, Any]:
        sig = inspect.signature(self.cls.__init__)
        out = {}
        for p in list(sig.parameters.values())[1:]:  # skip self
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                out[p.name] = None if p.default is p.empty else p.default
        return out

    def width_multiple(self, options: dict[str, Any]) -> int:
        return 1


E = TypeVar("E", bound=Entry)


class Registry(Mapping[str, Any], Generic[E]):
    """Names of one kind -> entries. ``registry[name]`` is the registered object and
    ``registry.entry(name)`` its whole entry; an unknown name raises ``UnknownNameError`` (a
    ``KeyError`` and a ``ConfigError``) naming the closest registered names."""

    def __init__(self, kind: str, *, entry_type: type[E] = Entry, what: str | None = None) -> None:
        self.kind = kind
        self.what = what or kind  # how errors call a name of this registry ("task", "probe", ...)
        self._entry_type = entry_type
        self._entries: dict[str, E] = {}

    def add(self, name: str, obj: Any, *, paper: Paper | None = None, **meta: Any) -> E:
        """Register `obj` as `name`. The same object again (by module and qualified name, as
        when a module is imported twice) replaces the old entry; another object is an error."""
        old = self._entries.get(name)
        if old is not None and old.obj is not obj and _where(old.obj) != _where(obj):
            raise ConfigError(f"{self.what} {name!r} is registered twice ({_where(old.obj)}, {_where(obj)})")
        entry = self._entry_type(self.kind, name, obj, paper, dict(meta))
        self._entries[name] = entry
        return entry

    def entry(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.what, name, self._entries) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[E]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __getitem__(self, name: str) -> Any:
        return self.entry(name).obj

    def __setitem__(self, name: str, obj: Any) -> None:
        """Swap the object registered as `name`, keeping its metadata (for tests that wrap a
        registered function). A new name goes through ``add``."""
        old = self.entry(name)
        self._entries[name] = self._entry_type(old.kind, old.name, obj, old.paper, old.meta)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


# ---- blocks ------------------------------------------------------------------------------------
BLOCKS: dict[str, Registry[BlockEntry]] = {
    k: Registry(k, entry_type=MethodEntry if k == "method" else BlockEntry) for k in KINDS}
T = TypeVar("T", bound=type)


def _blocks(kind: str) -> Registry[BlockEntry]:
    if kind not in BLOCKS:
        raise unknown_name("block kind", kind, KINDS)
    return BLOCKS[kind]


def register(kind: str, name: str, *, paper: Paper | None = None) -> Callable[[T], T]:
    """Class decorator: make the block buildable as ``build(kind, name, d_model, ...)``. Sets
    ``cls.registry_kind``, ``cls.registry_name`` and ``cls.paper``."""
    registry = _blocks(kind)

    def deco(cls: T) -> T:
        registry.add(name, cls, paper=paper)
        cls.registry_kind = kind
        cls.registry_name = name
        cls.paper = paper
        return cls

    return deco


def get(kind: str, name: str) -> BlockEntry:
    return _blocks(kind).entry(name)


def names(kind: str) -> list[str]:
    """Registered block names of one kind, sorted."""
    return _blocks(kind).names()


def entries() -> list[BlockEntry]:
    """Every registered block, kind by kind (in ``KINDS`` order), then by name."""
    return [e for k in KINDS for e in BLOCKS[k].entries()]


def build(kind: str, name: str, d_model: int, **options: Any) -> nn.Module:
    """Build a registered block: ``build("mixer", "attention", 64, n_heads=4)``."""
    if kind == "method":
        raise ConfigError(f"a method has no width: build it with layerlab.methods.build_method({name!r}, **options)")
    entry = get(kind, name)
    valid = entry.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"{kind} {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}"
        )
    return entry.cls(d_model, **options)
