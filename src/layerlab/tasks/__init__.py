"""Tasks: seeded data with disjoint splits, an explicit metric and a chance level.

Every task is a dataclass subclass of :class:`Task` registered under a name::

    task = build_task("mqar", pairs=16, length=128)

``build_task`` is strict: an unknown parameter is a ConfigError naming the key and the valid
keys, an unknown task name suggests the closest registered names, and impossible parameter
values are rejected by the task's ``validate``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from ..config import from_dict
from ..errors import ConfigError, unknown_name
from .base import Batch, Task

T = TypeVar("T", bound=type)

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a dataclass ``Task`` subclass buildable as ``build_task(name)``."""

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Task) and dataclasses.is_dataclass(cls)):
            raise ConfigError(f"task {name!r}: {cls!r} must be a dataclass subclass of Task")
        if cls.__dict__.get("name", name) != name:
            raise ConfigError(f"task {name!r}: class {cls.__name__} declares name {cls.__dict__['name']!r}")
        old = _TASKS.get(name)
        if old is not None and _where(old) != _where(cls):  # re-importing a module is fine
            raise ConfigError(f"task {name!r} is registered twice ({_where(old)}, {_where(cls)})")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    """The class registered as `name`; an unknown name suggests close matches."""
    try:
        return _TASKS[name]
    except KeyError:
        raise unknown_name("task", name, _TASKS) from None


def build_task(name: str, **params: Any) -> Task:
    """Build the task registered as `name` from its parameters, strictly."""
    cls = get_task_class(name)
    return from_dict(cls, params, where=f"task {name!r}")


# The built-in tasks register themselves on import.
from . import copying, digits, modular, recall, state_tracking, teacher, text  # noqa: E402,F401

__all__ = ["Batch", "Task", "build_task", "get_task_class", "register_task", "task_names"]
