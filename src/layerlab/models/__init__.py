"""Backbones that take registered blocks as parts, and ``build_model(spec, task)``.

A backbone takes its ``ModelSpec`` (``layerlab.spec``, floor 5, above the models) as an
argument and reads its fields; the models never import the spec module.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from .classifier import Classifier
from .deep_linear import DeepLinear
from .noprop import NoProp
from .sequence import NORM_PLACES, SequenceModel


BACKBONES = ("sequence", "classifier", "deep_linear", "noprop")


def build_model(spec: Any, task: Any) -> nn.Module:
    """Build the model `spec` describes for `task` (which gives vocabulary, classes, lengths)."""
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
    if spec.backbone == "noprop":
        return NoProp(spec, in_features=task.input_dim, n_classes=task.n_outputs)
    return DeepLinear(in_features=task.input_dim, out_features=task.n_outputs, width=spec.d_model,
                      depth=spec.n_layers, init=spec.init, init_scale=spec.init_scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BACKBONES", "NORM_PLACES", "Classifier", "DeepLinear", "NoProp", "SequenceModel", "build_model",
           "count_parameters"]
