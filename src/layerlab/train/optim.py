"""Optimizers, their weight-decay groups, and the warmup + cosine learning-rate schedule."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..spec import OptimSpec


def no_weight_decay_parameters(model: nn.Module) -> set[int]:
    """``id``s of the parameters that weight decay must skip, as the blocks declare them.

    Any module may declare ``no_weight_decay``: a tuple of the names of its own parameters
    (relative to that module, e.g. ``("A_log", "D")``), typically a state-space model's
    eigenvalue parameters, which the official code keeps out of weight decay (decay would pull
    them to zero and undo their initialization). A name that is not a parameter of the module
    is a ConfigError, so a typo cannot silently leave a parameter decayed.
    """
    skip: set[int] = set()
    for path, module in model.named_modules():
        names = getattr(module, "no_weight_decay", ())
        if isinstance(names, str) or not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
            raise ConfigError(
                f"{type(module).__name__}.no_weight_decay must be a tuple of parameter names, e.g. "
                f"('A_log', 'D'); got {names!r}"
            )
        own = dict(module.named_parameters())
        for name in names:
            if name not in own:
                raise ConfigError(
                    f"{type(module).__name__} ({path or 'the model'}) lists {name!r} in no_weight_decay, "
                    f"but has no such parameter; its parameters: {', '.join(own) or '(none)'}"
                )
            skip.add(id(own[name]))
    return skip


def decay_groups(model: nn.Module, spec: OptimSpec) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: weight decay applies to tensors with >= 2 dims (weights,
    embeddings) except those a block lists in ``no_weight_decay``; biases, gains and the other
    vectors are never decayed. Empty groups are left out."""
    skip = no_weight_decay_parameters(model)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and id(p) not in skip else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def optimizer_for(groups: list[dict[str, Any]], spec: OptimSpec) -> torch.optim.Optimizer:
    """AdamW or SGD over `groups` (``decay_groups``' layout), with the spec's hyperparameters."""
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)


def build_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.Optimizer:
    """AdamW or SGD with two groups (``decay_groups``)."""
    return optimizer_for(decay_groups(model, spec), spec)


def lr_at(step: int, total_steps: int, spec: OptimSpec) -> float:
    """Learning rate for `step` (0-based): linear warmup to spec.lr, then cosine to lr * min_lr_ratio."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return spec.lr
    span = max(total_steps - spec.warmup_steps, 1)
    progress = min((step - spec.warmup_steps) / span, 1.0)
    ratio = spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return spec.lr * ratio
