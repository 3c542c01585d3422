"""Atomic checkpoints: a killed process leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CorruptCheckpoint(RuntimeError):
    """The checkpoint exists but cannot be read."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The saved state, None if there is no checkpoint, CorruptCheckpoint if it cannot be read."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unpickling/zip error means the file is unusable
        raise CorruptCheckpoint(f"checkpoint {path} is corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CorruptCheckpoint(f"checkpoint {path} is corrupt (missing model state or step)")
    return state
