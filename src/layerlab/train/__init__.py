"""The training loop, optimizers and checkpoints."""
from .recorder import MemoryRecorder, Recorder
from .trainer import RunResult, Trainer

__all__ = ["MemoryRecorder", "Recorder", "RunResult", "Trainer"]
