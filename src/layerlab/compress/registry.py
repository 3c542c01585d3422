"""Efficiency techniques that act on a trained model, registered by name.

A technique is a function

    fn(model: nn.Module, level: float, ctx: CompressContext, **options) -> nn.Module

that returns a compressed *copy* of ``model`` (the input is never modified) at ``level``: the
fraction of weights or activations removed for pruning and sparsity (0 = dense, 0.9 = 90% zeros),
the bits per weight for quantization, the kept rank fraction for low rank; the registration says
which (``level_kind``). ``ctx`` carries what a technique may read besides the weights: the task,
a calibration batch from the *training* split (never validation or test), a seeded generator and
a loss function. A technique that needs the Hessian or activations computes them from ``ctx``.

Register one with::

    @register_technique("wina", paper=Paper(title, year, arxiv), level_kind="sparsity")
    def wina(model, level, ctx, *, calibration_examples=256): ...

Unknown options are rejected with the valid ones named (``check_options``). Savings are never
taken from the technique's word: ``layerlab.compress.savings`` measures them on the returned model.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Entry, Paper, Registry

TECHNIQUES: Registry[Entry] = Registry("technique")
LEVEL_KINDS = ("sparsity", "bits", "rank")


@dataclass
class CompressContext:
    """What a technique may read besides the model: ``task`` (a layerlab task), ``calibration``
    (a batch of the training split: ``.inputs``, ``.targets``, ``.mask``), ``generator`` (seeded),
    ``loss_fn(model, batch) -> scalar`` (the task's training loss) and the device."""

    task: Any
    calibration: Any
    generator: torch.Generator
    loss_fn: Callable[[nn.Module, Any], Tensor]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


Technique = Callable[..., nn.Module]


def register_technique(name: str, *, paper: Paper | None = None, level_kind: str = "sparsity",
                       levels: tuple[float, ...] = ()) -> Callable[[Technique], Technique]:
    """Decorator: register ``fn(model, level, ctx, **options) -> nn.Module`` as technique ``name``.
    ``level_kind``: what ``level`` means ("sparsity", "bits" or "rank"); ``levels``: the default
    sweep of ``layerlab compress --levels``."""
    if level_kind not in LEVEL_KINDS:
        raise ConfigError(f"technique {name!r}: level_kind must be one of {LEVEL_KINDS}, got {level_kind!r}")

    def deco(fn: Technique) -> Technique:
        TECHNIQUES.add(name, fn, paper=paper, level_kind=level_kind, levels=tuple(levels))
        return fn

    return deco


def technique_options(name: str) -> dict[str, Any]:
    """The keyword options of technique ``name`` with their defaults."""
    fn = TECHNIQUES[name]
    params = list(inspect.signature(fn).parameters.values())[3:]  # model, level, ctx
    return {p.name: None if p.default is p.empty else p.default for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_options(name: str, options: dict[str, Any]) -> None:
    """An unknown option of technique ``name`` is an error naming the valid ones."""
    valid = technique_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"technique {name!r} has no option(s) {unknown}; valid options: "
                          f"{', '.join(f'{k}={v!r}' for k, v in valid.items()) or 'none'}")


def check_level(name: str, level: float) -> None:
    """``level`` in the range its kind allows, or an error saying what the level means."""
    kind = TECHNIQUES.entry(name).meta["level_kind"]
    if kind in ("sparsity", "rank") and not 0.0 <= level <= 1.0:
        raise ConfigError(f"technique {name!r} takes a {kind} level in [0, 1] (the fraction "
                          f"{'removed' if kind == 'sparsity' else 'of the rank kept'}), got {level}")
    if kind == "bits" and not (level >= 1 and float(level).is_integer()):
        raise ConfigError(f"technique {name!r} takes a whole number of bits >= 1 as its level, got {level}")


def apply_technique(name: str, model: nn.Module, level: float, ctx: CompressContext, **options: Any) -> nn.Module:
    """Run technique ``name`` on ``model`` after checking its level and options."""
    check_level(name, level)
    check_options(name, options)
    return TECHNIQUES[name](model, level, ctx, **options)
