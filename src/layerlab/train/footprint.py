"""What a model costs besides time: training memory of one step and inference state per sequence.

``train_step_memory`` runs one forward and backward pass on a copy of the model:
- on CUDA it is the measured peak of ``torch.cuda.max_memory_allocated`` over that step, plus the
  optimizer's state (created lazily at the first real step, so absent from the measured step);
- on the CPU, where PyTorch keeps no allocator statistics, it is the sum of what a training step
  must hold at once: parameters, their gradients, the optimizer's state
  (``optimizer_slots`` tensors per parameter: 2 for Adam/AdamW) and every tensor autograd saves
  for the backward pass (each storage counted once). Transient buffers inside one operation are
  not counted, so this is a lower bound of the true peak, the same for every block.

``inference_state_size`` is the per-sequence memory of autoregressive inference in scalars:
each recurrent mixer's measured ``state_size`` plus, for attention, its key/value cache at the
given length. Mixers are found by what they expose (a ``recurrent`` flag and ``init_state``),
not by their class: this module (floor 6) knows no block class.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def saved_activation_bytes(fn: Callable[[], Tensor], exclude: set[int] = frozenset()) -> tuple[Tensor, int]:
    """Run ``fn()`` and count the bytes autograd saves for backward, each storage once, leaving
    out storages whose data pointer is in ``exclude`` (the parameters, counted separately)."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.layout == torch.strided and t.device.type != "meta":
            storage = t.untyped_storage()
            if storage.data_ptr() not in exclude:
                seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def train_step_memory(model: nn.Module, step_loss: Callable[[nn.Module], Tensor], *,
                      optimizer_slots: int = 2) -> int:
    """Bytes one training step of ``model`` holds at its peak (see the module docstring).

    ``step_loss(model)`` computes the loss of one training batch. The model itself is untouched
    (a deep copy runs the step) and the global RNG state is restored afterwards.
    """
    work = copy.deepcopy(model)
    params = [p for p in work.parameters() if p.requires_grad]
    param_bytes = _tensor_bytes(work.parameters())
    optim_bytes = optimizer_slots * _tensor_bytes(params)
    device = next(work.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            step_loss(work).backward()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            return int(param_bytes + peak + optim_bytes)
        param_ptrs = {p.untyped_storage().data_ptr() for p in work.parameters()}
        loss, saved = saved_activation_bytes(lambda: step_loss(work), exclude=param_ptrs)
        loss.backward()
    grad_bytes = _tensor_bytes(p.grad for p in params if p.grad is not None)
    return int(param_bytes + grad_bytes + optim_bytes + saved)


def _is_sequence_mixer(module: nn.Module) -> bool:
    """A sequence mixer, known by what it exposes (``layerlab.blocks.mixers.base.Mixer``): a
    ``recurrent`` flag and ``init_state``."""
    return isinstance(getattr(module, "recurrent", None), bool) and callable(getattr(module, "init_state", None))


def sequence_mixers(model: nn.Module) -> list[nn.Module]:
    """The outermost sequence mixers of ``model``: a mixer made of mixers (Griffin's recurrent
    blocks and local attention) counts once, as a whole."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if _is_sequence_mixer(m):
            found.append((name, m))
    return [m for _, m in found]


def inference_state_size(model: nn.Module, length: int) -> int | None:
    """Scalars of inference state per sequence of ``length`` tokens (None: no sequence mixers,
    or one that neither is recurrent nor has a ``cache_size``)."""
    mixers = sequence_mixers(model)
    if not mixers:
        return None
    total = 0
    for m in mixers:
        if m.recurrent:
            total += m.state_size
        elif hasattr(m, "cache_size"):
            total += m.cache_size(length)
        else:
            return None
    return total
