"""Probes: instruments attached to a training run at chosen steps, writing into its record.

A probe is a function ``probe(ctx, **options) -> ProbeOutput`` registered by name. The trainer
calls every probe of ``spec.probes`` at the steps ``ProbeSpec.steps(total)`` gives (step 0 is the
initialization), with a ``ProbeContext``: the model, the task, a fixed probe batch (the first
examples of the validation split: probes never draw from the training stream), the loss on it,
the current learning rate and a per-run ``state`` dict for what a probe keeps between calls
(e.g. the kernel at initialization). Scalars are recorded as metrics of split ``"probe"`` named
``"<probe>/<key>"``; arrays are stored losslessly as files referenced from the run.

Every probe runs inside ``side_effect_free``: training with probes gives bit-identical losses
to training without them (tested).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, unknown_name
from ._util import side_effect_free


@dataclass
class ProbeContext:
    model: nn.Module
    task: Any  # layerlab.tasks.Task
    batch: Any  # layerlab.tasks.Batch on the model's device, inputs in the model's dtype
    step: int
    lr: float
    state: dict[str, Any]
    load_array: Callable[[int, str], Tensor | None]  # (step, "<probe>/<key>") -> stored array

    def inputs(self, batch: Any = None) -> Tensor:
        return (batch or self.batch).inputs

    def loss_fn(self, model: nn.Module, batch: Any) -> Tensor:
        """The task's training loss of `model` on `batch` (a mean over scored positions)."""
        return self.task.loss(model(batch.inputs), batch)


@dataclass
class ProbeOutput:
    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, Tensor] = field(default_factory=dict)


Probe = Callable[..., ProbeOutput]
PROBES: dict[str, Probe] = {}


def register_probe(name: str) -> Callable[[Probe], Probe]:
    def deco(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn

    return deco


def probe_names() -> list[str]:
    return sorted(PROBES)


def _option_names(fn: Probe) -> list[str]:
    return [p.name for p in list(inspect.signature(fn).parameters.values())[1:]]


def check_probes(names: tuple[str, ...] | list[str], options: dict[str, dict[str, Any]]) -> None:
    """Unknown probe names or options fail before any training, naming the valid ones."""
    for name in names:
        if name not in PROBES:
            raise unknown_name("probe", name, PROBES)
    for name, opts in options.items():
        if name not in names:
            raise ConfigError(f"probes.options names probe {name!r}, which is not in probes.names "
                              f"{list(names)}; add it there or remove its options")
        if not isinstance(opts, dict):
            raise ConfigError(f"probes.options.{name} must be a table of options, got {opts!r}")
        valid = _option_names(PROBES[name])
        for key in opts:
            if key not in valid:
                raise unknown_name(f"option of probe {name!r}", key, valid)


class ProbeRunner:
    """Runs the probes of one run; the trainer calls it at each probe step."""

    def __init__(self, names: tuple[str, ...], options: dict[str, dict[str, Any]], task: Any,
                 *, batch_size: int, device: torch.device, dtype: torch.dtype,
                 load_array: Callable[[int, str], Tensor | None] | None = None) -> None:
        check_probes(names, options)
        self.names, self.options, self.task = tuple(names), options, task
        split = "val" if "val" in task.eval_splits else task.eval_splits[0]
        batch = task.eval_set(split).slice(0, batch_size).to(device)
        if batch.inputs.is_floating_point():
            batch.inputs = batch.inputs.to(dtype)
        self.batch = batch
        self.state: dict[str, dict[str, Any]] = {name: {} for name in names}
        self.load_array = load_array or (lambda step, name: None)

    def __call__(self, step: int, model: nn.Module, *, lr: float) -> ProbeOutput:
        out = ProbeOutput()
        for name in self.names:
            ctx = ProbeContext(model=model, task=self.task, batch=self.batch, step=step, lr=lr,
                               state=self.state[name], load_array=self.load_array)
            with side_effect_free(model):
                result = PROBES[name](ctx, **self.options.get(name, {}))
            out.scalars.update({f"{name}/{k}": float(v) for k, v in result.scalars.items()})
            out.arrays.update({f"{name}/{k}": v.detach().cpu() for k, v in result.arrays.items()})
        return out


# ---- built-in probes ------------------------------------------------------------------------
@register_probe("weights")
def weights_probe(ctx: ProbeContext, *, per_parameter: bool = True) -> ProbeOutput:
    """L2 norm of all weights together (``norm``) and of each parameter tensor (``<name>``).

    Under weight decay the total norm is the quantity grokking analyses track (Liu et al. 2022,
    "Omnigrok", arXiv:2210.01117): it falls as the network moves from memorizing to generalizing.
    """
    norms = {n: p.detach().double().norm() for n, p in ctx.model.named_parameters()}
    scalars = {"norm": torch.stack(list(norms.values())).square().sum().sqrt().item()}
    if per_parameter:
        scalars.update({n: v.item() for n, v in norms.items()})
    return ProbeOutput(scalars)
