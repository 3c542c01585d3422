"""Backbones that take registered blocks as parts, and ``build_model(spec, task)``.

A backbone takes its ``ModelSpec`` (``layerlab.spec``, floor 5, above the models) as an
argument and reads its fields; the models never import the spec module.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from .classifier import Classifier
from .deeponet import OPERATOR_MIXERS, DeepONet, OperatorFNN, build_operator
from .mgno import MgNO, build_mgno
from .deep_linear import DeepLinear
from .noprop import NoProp
from .sequence import NORM_PLACES, SequenceModel
from .set_transformer import SET_MIXERS, SetModel, set_width_multiple


BACKBONES = ("sequence", "classifier", "deep_linear", "noprop", "set", "operator")
# the input kinds (a task's ``input_kind``) each backbone reads
BACKBONE_INPUTS: dict[str, tuple[str, ...]] = {
    "sequence": ("tokens",), "classifier": ("vector",), "deep_linear": ("vector",), "noprop": ("vector",),
    "set": ("set",), "operator": ("function",),
}
# backbones whose ``spec.mixer`` names one of their own blocks (not a registered sequence mixer)
BACKBONE_MIXERS: dict[str, tuple[str, ...]] = {"set": SET_MIXERS, "operator": OPERATOR_MIXERS + ("mgno",)}


def accepts(backbone: str, input_kind: str | None) -> bool:
    """Can `backbone` read a task whose inputs are of `input_kind`?"""
    return input_kind in BACKBONE_INPUTS.get(backbone, ())


def backbone_width_multiple(spec: Any) -> int:
    """What the backbone's own blocks need of the width (the set backbone's head count); 1 if nothing."""
    if spec.backbone == "set":
        return set_width_multiple(spec.mixer, spec.mixer_options)
    return 1


def build_model(spec: Any, task: Any) -> nn.Module:
    """Build the model `spec` describes for `task` (which gives vocabulary, classes, lengths)."""
    kind = getattr(task, "input_kind", None)
    if not accepts(spec.backbone, kind):
        reads = BACKBONE_INPUTS.get(spec.backbone, ())
        fits = [b for b, kinds in BACKBONE_INPUTS.items() if kind in kinds]
        use = f" Use backbone = {fits[0]!r} for {kind} tasks." if fits else ""
        needs = " or ".join("token" if k == "tokens" else k for k in reads) or "?"
        raise ConfigError(f"backbone {spec.backbone!r} needs a {needs} task; task "
                          f"{task.name!r} gives {kind} inputs.{use}")
    if spec.backbone == "sequence":
        return SequenceModel(spec, vocab_size=task.vocab_size, n_outputs=task.n_outputs, max_length=task.max_length)
    if spec.backbone == "set":
        return SetModel(spec, in_features=task.input_dim, n_outputs=task.n_outputs)
    if spec.backbone == "operator":
        build = build_mgno if spec.mixer == "mgno" else build_operator
        return build(spec, sensors=task.input_dim, queries=task.queries)
    if spec.backbone == "classifier":
        return Classifier(spec, in_features=task.input_dim, n_classes=task.n_outputs)
    if spec.backbone == "noprop":
        return NoProp(spec, in_features=task.input_dim, n_classes=task.n_outputs)
    return DeepLinear(in_features=task.input_dim, out_features=task.n_outputs, width=spec.d_model,
                      depth=spec.n_layers, init=spec.init, init_scale=spec.init_scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BACKBONES", "BACKBONE_INPUTS", "BACKBONE_MIXERS", "NORM_PLACES", "Classifier", "DeepLinear", "DeepONet", "MgNO", "NoProp",
           "OperatorFNN", "SequenceModel", "SetModel", "accepts", "backbone_width_multiple", "build_model", "count_parameters"]
