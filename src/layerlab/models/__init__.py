"""Backbones that take registered blocks as parts, and ``build_model(spec, task)``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError, unknown_name

BACKBONES = ("sequence", "classifier", "deep_linear")
NORM_PLACES = ("pre", "post", "peri")


@dataclass(frozen=True)
class ModelSpec:
    """A model: a backbone and the registered blocks it is made of.

    ``d_model`` is the width the arena sizes to a parameter budget.
    Block options go to ``layerlab.build`` unchanged (e.g. ``mixer_options = {n_heads = 4}``).
    """

    backbone: str = "sequence"
    mixer: str = "attention"
    channel: str = "mlp"
    norm: str = "rmsnorm"
    norm_place: str = "pre"
    d_model: int = 64
    n_layers: int = 2
    positions: str = "learned"  # "learned" or "none" (sequence backbone)
    mixer_options: dict[str, Any] = field(default_factory=dict)
    channel_options: dict[str, Any] = field(default_factory=dict)
    norm_options: dict[str, Any] = field(default_factory=dict)
    init: str = "orthogonal"  # deep_linear only: "small", "orthogonal" or "balanced"
    init_scale: float = 1e-3  # deep_linear only: scale of the "small"/"balanced" init

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise unknown_name("backbone", self.backbone, BACKBONES)
        if self.norm_place not in NORM_PLACES:
            raise unknown_name("norm placement", self.norm_place, NORM_PLACES)
        if self.positions not in ("learned", "none"):
            raise unknown_name("positions", self.positions, ("learned", "none"))
        if self.d_model < 1 or self.n_layers < 1:
            raise ConfigError(f"d_model and n_layers must be >= 1, got {self.d_model}, {self.n_layers}")

    @property
    def width_multiple(self) -> int:
        """Widths the arena may choose are multiples of this: the least common multiple of what
        each block of the model needs (a head count, a number of groups or components)."""
        from ..registry import get

        if self.backbone == "deep_linear":
            return 1
        parts = [("channel", self.channel, self.channel_options), ("norm", self.norm, self.norm_options)]
        if self.backbone == "sequence":
            parts.append(("mixer", self.mixer, self.mixer_options))
        return math.lcm(*(get(kind, name).width_multiple(options) for kind, name, options in parts))

    def label(self) -> str:
        if self.backbone == "sequence":
            return f"{self.mixer}+{self.channel}"
        if self.backbone == "classifier":
            return f"{self.channel}"
        return f"deep_linear[{self.init}]"


def build_model(spec: ModelSpec, task: Any) -> nn.Module:
    """Build the model `spec` describes for `task` (which gives vocabulary, classes, lengths)."""
    from .classifier import Classifier
    from .deep_linear import DeepLinear
    from .sequence import SequenceModel

    kind = getattr(task, "input_kind", None)
    if spec.backbone == "sequence":
        if kind != "tokens":
            raise ConfigError(f"backbone 'sequence' needs a token task; task {task.name!r} gives {kind} inputs. "
                              "Use backbone = 'classifier' for vector tasks.")
        return SequenceModel(spec, vocab_size=task.vocab_size, n_outputs=task.n_outputs, max_length=task.max_length)
    if kind != "vector":
        raise ConfigError(f"backbone {spec.backbone!r} needs a vector task; task {task.name!r} gives {kind} inputs. "
                          "Use backbone = 'sequence' for token tasks.")
    if spec.backbone == "classifier":
        return Classifier(spec, in_features=task.input_dim, n_classes=task.n_outputs)
    return DeepLinear(in_features=task.input_dim, out_features=task.n_outputs, width=spec.d_model,
                      depth=spec.n_layers, init=spec.init, init_scale=spec.init_scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
