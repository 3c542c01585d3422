"""The task registry: ``register_task`` puts a dataclass ``Task`` subclass under a name, and
``build_task`` builds it from its parameters, strictly (``layerlab.registry.Registry``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from ..config import from_dict
from ..errors import ConfigError
from ..registry import Entry, Registry
from .base import Task

T = TypeVar("T", bound=type)

TASKS: Registry[Entry] = Registry("task")


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a dataclass ``Task`` subclass buildable as ``build_task(name)``."""

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Task) and dataclasses.is_dataclass(cls)):
            raise ConfigError(f"task {name!r}: {cls!r} must be a dataclass subclass of Task")
        if cls.__dict__.get("name", name) != name:
            raise ConfigError(f"task {name!r}: class {cls.__name__} declares name {cls.__dict__['name']!r}")
        TASKS.add(name, cls)
        cls.name = name
        return cls

    return deco


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return TASKS.names()


def get_task_class(name: str) -> type[Task]:
    """The class registered as `name`; an unknown name suggests close matches."""
    return TASKS[name]


def build_task(name: str, **params: Any) -> Task:
    """Build the task registered as `name` from its parameters, strictly."""
    cls = get_task_class(name)
    return from_dict(cls, params, where=f"task {name!r}")
