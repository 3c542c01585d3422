"""What a compressed model saves against its dense parent, measured on the two models themselves.

A technique's word is never taken: every number here is read from the tensors a model stores and
from running it, never computed from the technique's level by a formula.

Which tensors count
    The *stored* tensors of a model are its ``state_dict`` entries: parameters and persistent
    buffers (non-persistent buffers such as rotary caches are recomputed, not stored); a tensor held
    under two names (tied weights) counts once. Of those, a tensor counts only if it is *used*: one
    forward pass on the fixed batch reads it (it is seen as an argument of a torch function, a
    tensor method or operator included, while the model runs; reading only its ``.shape`` also
    counts, so the test errs towards counting). Stored tensors the forward never reads are listed in ``Cost.unused``.

Nonzero parameters (``nonzero_params``)
    The nonzero entries of the used stored tensors, bool tensors (masks) left out: a mask is not a
    weight. A pruning technique therefore stores exact zeros in its weights; a weight stored dense
    and multiplied by a mask at every forward counts as dense.

Bits (``bits``)
    Per used stored tensor, its element width times its entries: 32 per float32 entry, 8 per int8,
    and 1 per bool entry (a mask is a bit per entry). A module that stores weights in fewer bits says
    so with an attribute ``bits_per_weight = b``: its tensors named in its attribute
    ``quantized_tensors`` (default ``("weight",)``) count ``b`` bits per entry, its other tensors
    (scales, zero points, the bias) at their own width. The declared width is checked against the
    stored values, so a wrong declaration fails instead of inventing a saving: integer codes must
    span at most 2^b values (max - min + 1 <= 2^b); float values may take at most 2^b distinct
    values per scale, with as many scales as the module's other float entries besides ``bias``
    (at least one). A tensor that fails raises ``ConfigError`` naming the module.

Wall time (``time_ratio``)
    The compressed and the dense model run the same fixed batch in eval mode without gradients, on
    one thread, interleaved: each repeat times both, one right after the other, in an order drawn
    at random per repeat from a fixed seed (a fixed alternation can alias with the period at which
    the scheduler hands the core to other processes, and then always hit the same model). Each
    timing is a loop of forwards long enough to last ``min_time_s`` (the count fixed from the dense
    model's first call, the same for both). The ratio is the median over the repeats of the two
    adjacent timings' ratio, so that load from other processes, which drifts more slowly than one
    repeat, cancels; ``time_s`` and ``dense_time_s`` are the medians of each model's timings.

Memory (``memory_bytes``)
    On the CPU PyTorch keeps no allocator statistics, so the peak of one forward on the fixed batch
    is counted: the bytes of the used stored tensors as PyTorch holds them (``element_size`` per
    entry: a weight declared at 4 bits but stored as float32 takes 4 bytes here), plus the peak of
    the bytes of the tensors the forward creates and keeps alive at once (``activation_bytes``),
    tracked at every torch function the forward calls (tensor methods and operators included): an
    output's storage counts from the call that makes it until the last Python tensor that views it
    is freed; views and in-place results of stored or input tensors add nothing. Temporaries inside
    one call (a composite function's intermediates, a kernel's buffers) are not seen, so it is a
    lower bound of the true peak, the same for both models. For sequence models ``state_size`` is
    the inference state per sequence (``layerlab.train.footprint.inference_state_size``: recurrent
    states and key/value caches, in scalars, read from the mixers' real state tensors).
"""
from __future__ import annotations

import math
import random
import statistics
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ..errors import ConfigError
from ..train.footprint import inference_state_size


@dataclass(frozen=True)
class Cost:
    """What one model costs, measured (see the module docstring for each quantity)."""

    params: int  # entries of the used stored tensors, masks (bool) left out
    nonzero_params: int  # their nonzero entries
    bits: float  # bits of the used stored tensors (declared widths checked against the values)
    model_bytes: int  # bytes of the used stored tensors as PyTorch holds them
    activation_bytes: int  # peak bytes of tensors one forward keeps alive at once
    state_size: int | None = None  # inference state per sequence, scalars (sequence models)
    unused: tuple[str, ...] = field(default=())  # stored tensors the forward never reads

    @property
    def memory_bytes(self) -> int:
        return self.model_bytes + self.activation_bytes


@dataclass(frozen=True)
class Savings:
    """A compressed model's cost beside its dense parent's, measured in the same call."""

    dense: Cost
    compressed: Cost
    dense_time_s: float  # median seconds of one forward of the fixed batch
    time_s: float
    time_ratio: float  # median over repeats of (compressed / dense), adjacent timings

    def as_dict(self) -> dict[str, float]:
        """Flat numbers (what the store keeps as the derived run's ``savings`` results)."""
        d, c = self.dense, self.compressed
        out = {
            "nonzero_params": float(c.nonzero_params), "dense_nonzero_params": float(d.nonzero_params),
            "nonzero_ratio": _ratio(c.nonzero_params, d.nonzero_params),
            "params": float(c.params), "dense_params": float(d.params),
            "bits": float(c.bits), "dense_bits": float(d.bits), "bits_ratio": _ratio(c.bits, d.bits),
            "time_s": self.time_s, "dense_time_s": self.dense_time_s, "time_ratio": self.time_ratio,
            "memory_bytes": float(c.memory_bytes), "dense_memory_bytes": float(d.memory_bytes),
            "memory_ratio": _ratio(c.memory_bytes, d.memory_bytes),
            "model_bytes": float(c.model_bytes), "activation_bytes": float(c.activation_bytes),
            "unused_tensors": float(len(c.unused)),
        }
        if c.state_size is not None and d.state_size is not None:
            out.update(state_size=float(c.state_size), dense_state_size=float(d.state_size),
                       state_ratio=_ratio(c.state_size, d.state_size))
        return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# ---- which stored tensors a forward reads, and how much memory it keeps alive -------------------
def _storage_key(t: Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # sparse, meta or other storage-less tensors
        return None


def _note(seen: set[int], args: Any, kwargs: Any) -> None:
    for leaf in tree_leaves((args, kwargs or {})):
        if isinstance(leaf, Tensor):
            key = _storage_key(leaf)
            if key is not None:
                seen.add(key)


class _Use(TorchFunctionMode):
    """Notes the storage of every tensor passed to a torch function while the model runs, and tracks
    the bytes of the storages the functions create (not those in ``external``: stored tensors and the
    input) while Python tensors view them. (A torch-function mode, not a dispatch mode: entering a
    dispatch mode imports TorchDynamo, seconds per process, and what it sees besides, the
    intermediates of composite functions, are temporaries of one call.)"""

    def __init__(self, external: set[int]) -> None:
        super().__init__()
        self.seen: set[int] = set()
        self.external = external
        self.views: dict[int, int] = {}  # storage -> live Python tensors viewing it
        self.live = self.peak = 0

    def _drop(self, key: int, nbytes: int) -> None:
        self.views[key] -= 1
        if self.views[key] == 0:
            del self.views[key]
            self.live -= nbytes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        _note(self.seen, args, kwargs)
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, Tensor):
                continue
            key = _storage_key(t)
            if key is None or key in self.external:
                continue
            nbytes = t.untyped_storage().nbytes()
            if key not in self.views:
                self.views[key] = 0
                self.live += nbytes
            self.views[key] += 1
            weakref.finalize(t, self._drop, key, nbytes)
        self.peak = max(self.peak, self.live)
        return out


@contextmanager
def _quiet(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients, the global RNG restored afterwards."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            yield
    finally:
        model.train(was)


def _stored(model: nn.Module) -> list[tuple[str, Tensor]]:
    """(name, tensor) of the state_dict's tensors, each tensor once (the first name of a tied one)."""
    out, seen = [], set()
    for name, t in model.state_dict(keep_vars=True).items():
        if not isinstance(t, Tensor):
            continue
        key = (_storage_key(t), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if key in seen:
            continue
        seen.add(key)
        out.append((name, t))
    return out


def _forward_use(model: nn.Module, inputs: Tensor, stored: list[tuple[str, Tensor]]) -> tuple[set[int], int]:
    """Run one forward: the storages it reads, and the peak bytes of the tensors it creates."""
    external = {k for _, t in stored if (k := _storage_key(t)) is not None}
    if (k := _storage_key(inputs)) is not None:
        external.add(k)
    use = _Use(external)
    with _quiet(model), use:
        out = model(inputs)
        peak = use.peak
    del out
    return use.seen, peak


# ---- bits -----------------------------------------------------------------------------------
def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    prefix, _, attr = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), attr


def _declared_bits(model: nn.Module, name: str) -> float | None:
    module, attr = _owner(model, name)
    bits = getattr(module, "bits_per_weight", None)
    if bits is None or attr not in tuple(getattr(module, "quantized_tensors", ("weight",))):
        return None
    bits = float(bits)
    if not (bits > 0 and math.isfinite(bits)):
        raise ConfigError(f"module {name.rpartition('.')[0] or 'the model'!r} ({type(module).__name__}) declares "
                          f"bits_per_weight = {bits}; it must be a positive number of bits")
    return bits


def _check_width(model: nn.Module, name: str, t: Tensor, bits: float) -> None:
    """The stored values of ``t`` fit the declared width (see the module docstring), or ConfigError."""
    module, attr = _owner(model, name)
    codes = math.ceil(2.0**bits - 1e-9)
    data = t.detach()
    if data.numel() == 0:
        return
    if data.dtype == torch.bool:
        fits, found = codes >= 2, "bool values"
    elif not (data.is_floating_point() or data.is_complex()):
        span = int(data.max()) - int(data.min()) + 1
        fits, found = span <= codes, f"integer codes spanning {span} values"
    else:
        quantized = set(getattr(module, "quantized_tensors", ("weight",)))
        scales = sum(v.numel() for k, v in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
                     if k not in quantized and k != "bias" and v.is_floating_point())
        distinct = int(torch.unique(data).numel())
        fits, found = distinct <= codes * max(scales, 1), f"{distinct} distinct values for {max(scales, 1)} scale(s)"
    if not fits:
        raise ConfigError(f"{name!r} is declared at bits_per_weight = {bits:g} by {type(module).__name__}, but holds "
                          f"{found}: more than {codes} per scale; store the quantized values (codes or code x scale), "
                          f"or do not declare bits_per_weight")


def _entry_bits(model: nn.Module, name: str, t: Tensor) -> float:
    declared = _declared_bits(model, name)
    if declared is not None:
        _check_width(model, name, t, declared)
        return declared
    return 1.0 if t.dtype == torch.bool else 8.0 * t.element_size()


# ---- the measurements -----------------------------------------------------------------------
def measure_cost(model: nn.Module, inputs: Tensor, *, state_length: int | None = None) -> Cost:
    """Nonzero parameters, bits, bytes and the forward's peak memory of ``model`` on ``inputs``
    (and, given ``state_length``, its inference state per sequence of that length)."""
    stored = _stored(model)
    seen, peak = _forward_use(model, inputs, stored)
    params = nonzero = model_bytes = 0
    bits = 0.0
    unused = []
    for name, t in stored:
        if _storage_key(t) not in seen:
            unused.append(name)
            continue
        n = t.numel()
        bits += n * _entry_bits(model, name, t)
        model_bytes += n * t.element_size()
        if t.dtype != torch.bool:
            params += n
            nonzero += int(torch.count_nonzero(t.detach()))
    state = inference_state_size(model, state_length) if state_length is not None else None
    return Cost(params=params, nonzero_params=nonzero, bits=bits, model_bytes=model_bytes, activation_bytes=peak,
                state_size=state, unused=tuple(unused))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(dense: nn.Module, compressed: nn.Module, inputs: Tensor, *, repeats: int = 15,
              min_time_s: float = 0.005) -> tuple[float, float, float]:
    """Median seconds of one forward of ``inputs`` through ``dense`` and through ``compressed``, and
    the median ratio compressed / dense of adjacent timings, interleaved on one thread (see the module
    docstring). The thread count is restored."""
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1 (timings of each model), got {repeats}")
    device = inputs.device
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def once(model: nn.Module, n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            model(inputs)
        _sync(device)
        return (time.perf_counter() - t0) / n

    try:
        with _quiet(dense), _quiet(compressed):
            once(dense, 1), once(compressed, 1)  # warm-up: lazy initialisation, caches
            loops = max(1, math.ceil(min_time_s / max(once(dense, 1), 1e-7)))
            times: dict[int, list[float]] = {0: [], 1: []}
            order = random.Random(0)
            for _ in range(repeats):
                for i in ((0, 1) if order.random() < 0.5 else (1, 0)):
                    times[i].append(once(dense if i == 0 else compressed, loops))
    finally:
        torch.set_num_threads(threads)
    ratios = [c / d if d > 0 else math.nan for d, c in zip(times[0], times[1])]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def measure_savings(dense: nn.Module, compressed: nn.Module, inputs: Tensor, *, repeats: int = 15,
                    min_time_s: float = 0.005, state_length: int | None = None) -> Savings:
    """The compressed model's cost beside the dense model's, both measured now on ``inputs`` (a fixed
    batch in the models' input dtype and device); wall times interleaved in this call."""
    dense_cost = measure_cost(dense, inputs, state_length=state_length)
    cost = measure_cost(compressed, inputs, state_length=state_length)
    t_dense, t, ratio = time_pair(dense, compressed, inputs, repeats=repeats, min_time_s=min_time_s)
    return Savings(dense=dense_cost, compressed=cost, dense_time_s=t_dense, time_s=t, time_ratio=ratio)
