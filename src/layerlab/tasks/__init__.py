"""Tasks: seeded data with disjoint splits, an explicit metric and a chance level.

Every task is a dataclass subclass of :class:`Task` registered under a name::

    task = build_task("mqar", pairs=16, length=128)

``build_task`` is strict: an unknown parameter is a ConfigError naming the key and the valid
keys, an unknown task name suggests the closest registered names, and impossible parameter
values are rejected by the task's ``validate``. The registry lives in ``tasks/registry.py``;
each task module (every module of this package but ``base`` and ``registry``) registers its
tasks there when this package imports it, so a new task is one new file.
"""
from __future__ import annotations

import importlib as _importlib
import pkgutil as _pkgutil

from .base import Batch, Task
from .registry import TASKS, build_task, get_task_class, register_task, task_names

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _module not in ("base", "registry") and not _module.startswith("_"):
        _importlib.import_module(f"{__name__}.{_module}")

__all__ = ["TASKS", "Batch", "Task", "build_task", "get_task_class", "register_task", "task_names"]
