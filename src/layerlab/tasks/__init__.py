"""Tasks: seeded data with disjoint splits, an explicit metric and a chance level.

Every task is a dataclass subclass of :class:`Task` registered under a name::

    task = build_task("mqar", pairs=16, length=128)

``build_task`` is strict: an unknown parameter is a ConfigError naming the key and the valid
keys, an unknown task name suggests the closest registered names, and impossible parameter
values are rejected by the task's ``validate``. The registry lives in ``tasks/registry.py``;
each task module registers its tasks there when this package imports it.
"""
from __future__ import annotations

from . import copying, digits, modular, recall, state_tracking, teacher, text  # noqa: F401  (register)
from .base import Batch, Task
from .registry import TASKS, build_task, get_task_class, register_task, task_names

__all__ = ["TASKS", "Batch", "Task", "build_task", "get_task_class", "register_task", "task_names"]
