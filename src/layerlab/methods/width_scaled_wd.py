"""Width-scaled AdamW: μP learning rates with a weight decay that grows with width.

Fan, Liu, Zhao, Yuan & Gu, "Robust Layerwise Scaling Rules by Proper Weight Decay Tuning" (2025,
arXiv:2510.15262). Under AdamW the steady-state singular values of each matrix parameter scale as
√(η/λ) and the top one as √(η/λ)·d^0.75 with width d; with μP's learning rate for matrix-like
parameters this gives the weight-decay rule (abstract; Sec. 3)

    matrix-like (hidden and output weights):  η₂ = η · d₀/d,        λ₂ = λ · (d/d₀)^(1/2)
    vector-like (biases, gains, input weights, embeddings):  η₁ = η,  λ₁ = 0

relative to a base (proxy) width d₀ at which η and λ were tuned, so that η and λ transfer
zero-shot from d₀ to d. λ is PyTorch's AdamW weight decay (each step multiplies the weight by
1 − η_g λ_g), so the decay per step of a matrix-like weight, η₂λ₂ = ηλ (d₀/d)^(1/2), shrinks with width.
The exponent of the decay rule is ``wd_exponent`` (the paper's 1/2; 1 gives λ₂ ∝ d).

Which parameters are matrix-like: every parameter with >= 2 dims except embeddings
(``nn.Embedding``), the input layers (``input_layers``; default: the classifier backbone's
``proj``, whose fan-in is the data's, not the width) and the parameters a block lists in
``no_weight_decay`` (kept without decay at η₁). μP also rescales the output layer's
initialization; this method changes only the optimizer (the blocks keep their own init).

The run's schedule sets one learning rate η_t for the whole optimizer (the Trainer writes it into
every group); each group carries its factor ``lr_scale`` (d₀/d or 1), applied inside ``step``, so
group g steps with η_t · lr_scale_g. Hook: ``make_optimizer`` (AdamW only: the run's betas, eps,
λ = ``optim.weight_decay``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._layers import (INPUT_NAMES, check_names, declared_no_decay, default_io, embedding_parameters,
                      module_parameters)
from .base import Method

PAPER = Paper("Robust Layerwise Scaling Rules by Proper Weight Decay Tuning", 2025, "2510.15262")


class LayerwiseAdamW(torch.optim.AdamW):
    """AdamW whose groups each scale the (scheduled) learning rate by their ``lr_scale``."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        for g in self.param_groups:
            g.setdefault("lr_scale", 1.0)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        base = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * g["lr_scale"]
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, base):
                g["lr"] = lr


def width_scaled_groups(model: nn.Module, *, width: int, base_width: int, weight_decay: float,
                        wd_exponent: float = 0.5, input_layers: tuple[str, ...] | None = None,
                        skip: set[int] = frozenset()) -> list[dict[str, Any]]:
    """The parameter groups of the rule: matrix-like (lr_scale d₀/d, λ (d/d₀)^wd_exponent) and
    vector-like (lr_scale 1, no decay); empty groups left out. Names: ``"matrix"``, ``"vector"``."""
    m = width / base_width
    inputs = default_io(model, INPUT_NAMES) if input_layers is None else input_layers
    vector_ids = module_parameters(model, inputs, "input_layers", "width_scaled_wd") | embedding_parameters(model)
    vector_ids |= set(skip)
    matrix, vector = [], []
    for p in model.parameters():
        if p.requires_grad:
            (matrix if p.ndim >= 2 and id(p) not in vector_ids else vector).append(p)
    groups = [{"params": matrix, "name": "matrix", "lr_scale": 1.0 / m, "weight_decay": weight_decay * m**wd_exponent},
              {"params": vector, "name": "vector", "lr_scale": 1.0, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def model_width(model: nn.Module) -> int | None:
    spec = getattr(model, "spec", None)
    d = getattr(spec, "d_model", None)
    return int(d) if isinstance(d, int) else None


@register("method", "width_scaled_wd", paper=PAPER)
class WidthScaledWD(Method):
    """Width-scaled AdamW (Fan et al., "Robust Layerwise Scaling Rules by Proper Weight Decay
    Tuning", 2025, arXiv:2510.15262): matrix-like parameters η₂ = η d₀/d, λ₂ = λ (d/d₀)^(1/2);
    vector-like η₁ = η, λ₁ = 0. Hook: optimizer (AdamW).

    Options: ``base_width`` d₀ (default 64, the width η and λ were tuned at), ``width`` d (default:
    the model's ``d_model``), ``wd_exponent`` (default 0.5, the paper's rule), ``input_layers``
    (submodules whose weights are vector-like; default the classifier's ``proj`` where present).
    """

    def __init__(self, *, base_width: int = 64, width: int | None = None, wd_exponent: float = 0.5,
                 input_layers: list[str] | None = None) -> None:
        for key, v in (("base_width", base_width), ("width", width)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"width_scaled_wd: {key} must be an integer >= 1, got {v!r}")
        if isinstance(wd_exponent, bool) or not isinstance(wd_exponent, (int, float)) or not math.isfinite(wd_exponent):
            raise ConfigError(f"width_scaled_wd: wd_exponent must be a finite number (the paper's 0.5), got {wd_exponent!r}")
        self.base_width, self.width, self.wd_exponent = base_width, width, float(wd_exponent)
        self.input_layers = check_names(input_layers, "input_layers", "width_scaled_wd")

    def make_optimizer(self, model: nn.Module, default: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        run_opt = default()  # the run's own optimizer: its betas, eps, weight decay
        if not isinstance(run_opt, torch.optim.AdamW):
            raise ConfigError(f"width_scaled_wd scales AdamW; the run's optimizer is {type(run_opt).__name__}. "
                              "Set optim.name = 'adamw'")
        g0 = run_opt.param_groups[0]
        wd = max(g["weight_decay"] for g in run_opt.param_groups)
        return LayerwiseAdamW(self.groups(model, wd, declared_no_decay(model)), lr=g0["lr"], betas=g0["betas"],
                              eps=g0["eps"])

    def groups(self, model: nn.Module, weight_decay: float, skip: set[int] = frozenset()) -> list[dict[str, Any]]:
        width = self.width if self.width is not None else model_width(model)
        if width is None:
            raise ConfigError("width_scaled_wd: the model has no d_model; give the width as the option `width`")
        return width_scaled_groups(model, width=width, base_width=self.base_width, weight_decay=weight_decay,
                                   wd_exponent=self.wd_exponent, input_layers=self.input_layers, skip=skip)
