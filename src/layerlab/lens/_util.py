"""What every instrument shares: it must leave the model and the run exactly as it found them."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import ConfigError, unknown_name

# A loss function of a model on one batch, returning a scalar tensor (a mean over the batch).
LossFn = Callable[[nn.Module, Any], Tensor]


@contextlib.contextmanager
def side_effect_free(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run an instrument on `model` without changing anything training depends on.

    Inside: the model is in eval mode (unless ``eval_mode=False``), the global CPU and CUDA RNG
    states are forked, and every parameter's ``.grad`` is set aside. On exit: the train/eval flag
    of every submodule, the RNG states and the ``.grad`` tensors (the same objects, same values)
    are restored. Parameters themselves must not be modified in place by the instrument.

    Scaled-dot-product attention runs on its math backend inside: the fused CPU and flash
    kernels have neither the double backward (Hessian-vector products) nor the forward-mode
    derivative (NTK-vector products) that instruments take; the math form computes the same
    function.

    A nested call on a model already inside ``side_effect_free(eval_mode=True)`` does nothing
    (the outer call restores everything on exit): an instrument built from instruments, such
    as a probe taking many Hessian-vector products, does not save and restore state per product.
    """
    if _INSIDE.get(id(model)) is True and eval_mode:
        yield model
        return
    outer = _INSIDE.get(id(model))
    _INSIDE[id(model)] = eval_mode
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    for p in params:
        p.grad = None
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), sdpa_kernel([SDPBackend.MATH]):
            if eval_mode:
                model.eval()
            yield model
    finally:
        for p, g in zip(params, grads):
            p.grad = g
        for m, training in modes:
            m.training = training
        if outer is None:
            del _INSIDE[id(model)]
        else:
            _INSIDE[id(model)] = outer


# id(model) -> eval_mode of the side_effect_free call it is inside (one thread of instruments)
_INSIDE: dict[int, bool] = {}


def named_trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters that require gradients, by name (the space Hessians and NTKs live in)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}



def select_parameters(model: nn.Module, params: str | Sequence[str] | None, *,
                      trainable_only: bool = True) -> list[str]:
    """Names of the parameters an instrument works on, in the model's order.

    ``params`` is None (all of them), a name or a list of names; a name selects the parameter of
    that name or every parameter of the submodule of that name (``"fc1"`` or ``"fc1."`` selects
    ``fc1.weight`` and ``fc1.bias``). With ``trainable_only`` only parameters that require
    gradients count (Hessians and NTKs live in their space); naming only frozen ones is an error
    that says so, and an unknown name suggests the closest parameter or module prefixes.
    """
    named = list(model.named_parameters())
    pool = [n for n, p in named if p.requires_grad or not trainable_only]
    if not pool:
        raise ConfigError("the model has no trainable parameters (requires_grad=True); "
                          "instruments differentiate with respect to those")
    if params is None:
        return pool
    wanted = [params] if isinstance(params, str) else list(params)
    if not wanted:
        raise ConfigError("params is empty; pass None for all parameters")

    def matches(name: str, item: str) -> bool:
        return name == item or name.startswith(item if item.endswith(".") else item + ".")

    chosen: set[str] = set()
    for item in wanted:
        hits = [n for n in pool if matches(n, item)]
        if not hits:
            frozen = [n for n, p in named if not p.requires_grad and matches(n, item)]
            if frozen:
                raise ConfigError(f"{item!r} selects only frozen parameters {frozen} (requires_grad=False); "
                                  "unfreeze them or pick trainable ones")
            prefixes = {n.rsplit(".", k)[0] for n in pool for k in range(1, n.count(".") + 1)}
            raise unknown_name("parameter or module prefix", item, set(pool) | prefixes)
        chosen.update(hits)
    return [n for n in pool if n in chosen]


# ---- batches: a loss over several batches is the mean over all their examples ----------------
def _leading(value: Any) -> int | None:
    return int(value.shape[0]) if isinstance(value, Tensor) and value.dim() >= 1 else None


def batch_size(batch: Any) -> int:
    """The number of examples in a batch: ``len(batch)`` for an object that has a length and is
    not a container (layerlab's ``Batch``), dim 0 of a tensor, or of the first tensor of a tuple,
    list or dict. Anything else is a ConfigError that asks for ``weights=``."""
    if isinstance(batch, Tensor):
        size = _leading(batch)
    elif isinstance(batch, (tuple, list)):
        size = next((n for n in map(_leading, batch) if n is not None), None)
    elif isinstance(batch, Mapping):
        size = next((n for n in map(_leading, batch.values()) if n is not None), None)
    elif hasattr(batch, "__len__"):
        size = len(batch)
    else:
        size = None
    if size is None:
        raise ConfigError(f"cannot tell the number of examples in a batch of type {type(batch).__name__}; "
                          "pass weights=[...] (one per batch: the number of terms its loss averages)")
    return size


def batch_weights(batches: list, weights: Sequence[float] | None = None) -> Tensor:
    """``w_b`` (float64, summing to 1): the batch sizes, or `weights`, normalized. Batches whose
    size cannot be told (all of them) weigh the same."""
    if weights is None:
        if len(batches) == 1:
            return torch.ones(1, dtype=torch.float64)
        try:
            weights = [batch_size(b) for b in batches]
        except ConfigError:
            if any(_known(b) for b in batches):
                raise
            weights = [1.0] * len(batches)
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if w.shape != (len(batches),) or not bool((w >= 0).all()) or not float(w.sum()) > 0:
        raise ConfigError(f"weights must hold one non-negative number per batch ({len(batches)}), not all "
                          f"zero, got {list(weights)}")
    return w / w.sum()


def _known(batch: Any) -> bool:
    try:
        batch_size(batch)
    except ConfigError:
        return False
    return True
