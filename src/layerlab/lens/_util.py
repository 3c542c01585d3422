"""What every instrument shares: it must leave the model and the run exactly as it found them."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

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
    """
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


def named_trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters that require gradients, by name (the space Hessians and NTKs live in)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}

