"""``train.compile``: run a model's forward (and, through AOTAutograd, its backward) as TorchInductor
kernels, with the eager model as the fallback.

`torch.compile` traces the model's Python into graphs and fuses their elementwise chains into
generated C++ (CPU) or Triton (GPU) kernels. The math is the model's own; only the order of
floating-point operations changes, so a compiled run matches the eager run to float rounding, not
bit for bit. Compilation happens lazily, at the first call, and costs seconds to a minute; it pays
off on long runs of models whose steps are dominated by many small elementwise operations.

The model is compiled in place (``nn.Module.compile``), so its ``state_dict`` keeps its names and
checkpoints of compiled and eager runs are interchangeable. Where compilation fails (typically no
C++ compiler on a CPU machine), `fall_back_to_eager` warns once and the run goes on eagerly.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def compile_model(model: nn.Module) -> None:
    """Compile `model` in place; the first call traces and generates its kernels."""
    model.compile()


def is_compiled(model: nn.Module) -> bool:
    return getattr(model, "_compiled_call_impl", None) is not None


def fall_back_to_eager(model: nn.Module, error: BaseException) -> None:
    """Undo `compile_model` after `error` (raised by the first compiled call), with one warning."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    warnings.warn(f"layerlab: train.compile failed ({type(error).__name__}: {first}); training eagerly "
                  "instead. Install a C++ compiler (e.g. g++) for TorchInductor on the CPU, or set "
                  "train.compile = false.", RuntimeWarning, stacklevel=2)
    model._compiled_call_impl = None  # what nn.Module.compile set; None restores the eager __call__
    torch._dynamo.reset()
