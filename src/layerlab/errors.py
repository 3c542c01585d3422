"""Errors that say what is wrong and how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class LayerlabError(Exception):
    """Base class of every error layerlab raises on purpose."""


class ConfigError(LayerlabError, ValueError):
    """A configuration (suite file, spec, block options) is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name (block, task, suite, key) is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(LayerlabError, FileNotFoundError):
    """A data file is missing or corrupt."""


class ShapeError(LayerlabError, ValueError):
    """A tensor has the wrong shape for a block."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def unknown_name(what: str, name: str, valid: Iterable[str]) -> UnknownNameError:
    """An error for an unknown `name`, suggesting the closest valid ones."""
    valid = sorted(valid)
    hint = close_matches(name, valid)
    msg = f"unknown {what} {name!r}"
    if hint:
        msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
    msg += f" Valid: {', '.join(valid) if valid else '(none)'}."
    return UnknownNameError(msg)
