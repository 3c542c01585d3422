"""Which parameters of a model are its hidden matrices: shared by the optimizer methods
(``width_scaled_wd``, ``muon``), which treat the input and output layers apart from the rest."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import ConfigError

INPUT_NAMES = ("proj",)  # the classifier backbone's input projection (layerlab.models.classifier)
OUTPUT_NAMES = ("head",)  # the classifier's and the sequence model's readout


def module_parameters(model: nn.Module, names: Iterable[str], option: str, method: str) -> set[int]:
    """``id``s of the parameters of the named submodules; a name that is not a submodule is a ConfigError."""
    modules = dict(model.named_modules())
    out: set[int] = set()
    for name in names:
        if name not in modules:
            raise ConfigError(f"{method}: {option} names {name!r}, which is not a submodule of the model; "
                              f"its top-level modules: {', '.join(n for n, _ in model.named_children()) or '(none)'}")
        out.update(id(p) for p in modules[name].parameters())
    return out


def embedding_parameters(model: nn.Module) -> set[int]:
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}


def default_io(model: nn.Module, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names of ``names`` that are top-level submodules of ``model`` (the backbones' own names)."""
    children = dict(model.named_children())
    return tuple(n for n in names if n in children)


def check_names(value: object, option: str, method: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{method}: {option} must be a list of submodule names (e.g. [\"proj\"]), got {value!r}")
    return tuple(value)


def declared_no_decay(model: nn.Module) -> set[int]:
    """``id``s of the parameters the blocks list in ``no_weight_decay`` (names of their own parameters;
    the run's optimizer has already checked them)."""
    out: set[int] = set()
    for module in model.modules():
        own = dict(module.named_parameters())
        out.update(id(own[n]) for n in getattr(module, "no_weight_decay", ()) if n in own)
    return out
