"""RunSpec: everything that defines one training run. Its hash is the run's identity.

The specs are plain data (floor 5 of DESIGN.md): each checks its own fields, and names that live
in a registry are checked where a spec is built from user input (the task and blocks when a
model is built, the probes by ``layerlab.lens.probes.check_probes`` in the suite loader and the
Trainer), so this module imports nothing that runs models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .config import canonical_json, config_hash, from_dict, to_dict
from .errors import ConfigError, unknown_name
from .models import BACKBONE_MIXERS, BACKBONES, NORM_PLACES, backbone_width_multiple
from .registry import get as get_block

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A model: a backbone and the registered blocks it is made of.

    ``d_model`` is the width the arena sizes to a parameter budget.
    Block options go to ``layerlab.build`` unchanged (e.g. ``mixer_options = {n_heads = 4}``).
    On a backbone with blocks of its own (``BACKBONE_MIXERS``: set, operator) ``mixer`` names
    one of them and ``mixer_options`` are that backbone's options (``layerlab.models``).
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
        if self.backbone in BACKBONE_MIXERS and self.mixer not in BACKBONE_MIXERS[self.backbone]:
            raise unknown_name(f"mixer of backbone {self.backbone!r}", self.mixer, BACKBONE_MIXERS[self.backbone])
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
        if self.backbone in ("deep_linear", "noprop", "operator"):
            return 1
        parts = [("channel", self.channel, self.channel_options), ("norm", self.norm, self.norm_options)]
        if self.backbone == "sequence":
            parts.append(("mixer", self.mixer, self.mixer_options))
        return math.lcm(backbone_width_multiple(self),
                        *(get_block(kind, name).width_multiple(options) for kind, name, options in parts))

    def label(self) -> str:
        if self.backbone == "sequence":
            return f"{self.mixer}+{self.channel}"
        if self.backbone == "classifier":
            return f"{self.channel}"
        if self.backbone == "noprop":
            return f"noprop[T={self.n_layers}]"
        if self.backbone in BACKBONE_MIXERS:
            return f"{self.backbone}[{self.mixer}]"
        return f"deep_linear[{self.init}]"


@dataclass(frozen=True)
class OptimSpec:
    """Optimizer and learning-rate schedule (linear warmup, then cosine decay or constant)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1  # cosine decays from lr to lr * min_lr_ratio
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 disables clipping (TOML has no None)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise unknown_name("optimizer", self.name, OPTIMIZERS)
        if self.schedule not in SCHEDULES:
            raise unknown_name("schedule", self.schedule, SCHEDULES)
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas needs two values, got {list(self.betas)}")


@dataclass(frozen=True)
class TrainSpec:
    """The training budget and bookkeeping of a run."""

    steps: int = 1000
    batch_size: int = 64  # <= 0: the whole training set (tasks that have a finite one)
    eval_every: int = 100  # validation every this many steps (0: only at the end)
    eval_batch_size: int = 256
    log_every: int = 10  # training loss is recorded as the mean over each window of this many steps
    target: float | None = None  # stop once the validation primary metric reaches this value
    time_budget_s: float | None = None  # stop once training time exceeds this (not deterministic)
    checkpoint_every: int = 0  # 0: at every evaluation
    dtype: str = "float32"
    # torch.compile the model (opt-in): same math, kernels fused by TorchInductor; the loss curve
    # matches eager to float rounding, not bit for bit, so a compiled run is a run of its own
    compile: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"train.steps must be >= 1, got {self.steps}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        if self.dtype not in DTYPES:
            raise unknown_name("dtype", self.dtype, DTYPES)


PROBE_SCHEDULES = ("log", "every")


@dataclass(frozen=True)
class ProbeSpec:
    """Instruments attached to a run (``layerlab.lens.probes``) and when they look.

    ``schedule = "log"``: at step 0 and ``points`` log-spaced steps up to the last one;
    ``"every"``: at step 0 and every ``every`` steps (and the last). The probes see the first
    ``batch_size`` examples of the validation split, never the training stream, so a run with
    probes trains bit-identically to the same run without them. ``options`` maps a probe name to
    its keyword options (e.g. ``{hessian = {k = 3}}``). ``stride`` maps a probe name to ``k``:
    that probe runs only at every ``k``-th of those steps (the first, step 0, included) and at the
    last, so a costly probe can look less often than the cheap ones (e.g. ``{hessian = 5}``).
    Probe names and options are checked against the probe registry by
    ``layerlab.lens.probes.check_probes``, which the suite loader and the Trainer call.
    """

    names: tuple[str, ...] = ()
    schedule: str = "log"
    points: int = 20
    every: int = 100
    batch_size: int = 256
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    stride: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in PROBE_SCHEDULES:
            raise unknown_name("probe schedule", self.schedule, PROBE_SCHEDULES)
        if self.points < 1 or self.every < 1 or self.batch_size < 1:
            raise ConfigError(f"probes: points, every and batch_size must be >= 1, got {self.points}, "
                              f"{self.every}, {self.batch_size}")
        for name, k in self.stride.items():
            if name not in self.names:
                raise ConfigError(f"probes.stride names probe {name!r}, which is not in probes.names "
                                  f"{list(self.names)}; add it there or remove its stride")
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"probes.stride.{name} must be an integer >= 1 (run at every k-th probe "
                                  f"step), got {k!r}")

    def steps(self, total: int) -> list[int]:
        """The optimizer steps (0 = before training) at which the probes run."""
        if not self.names:
            return []
        if self.schedule == "every":
            points = set(range(0, total + 1, self.every))
        else:
            ratio = total ** (1.0 / self.points) if total > 1 else 1.0
            points = {min(total, round(ratio ** i)) for i in range(self.points + 1)}
        return sorted(points | {0, total})

    def names_at(self, step: int, total: int) -> tuple[str, ...]:
        """The probes that run at `step` (one of ``steps(total)``), in ``names`` order."""
        steps = self.steps(total)
        if step not in steps:
            return ()
        i = steps.index(step)
        return tuple(n for n in self.names
                     if i % self.stride.get(n, 1) == 0 or step == steps[-1])


@dataclass(frozen=True)
class MethodSpec:
    """A training method of a run (``layerlab.methods``): its registered name and options. The
    name and options are checked against the registry by ``layerlab.methods.check_methods``,
    which the suite loader and the Trainer call."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a method needs a name (a registered method), got {self.name!r}")
        if not isinstance(self.options, dict):
            raise ConfigError(f"method {self.name!r}: options must be a table, got {self.options!r}")

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}[{opts}]" if opts else self.name


def method_specs(data: Any, where: str = "methods") -> tuple[MethodSpec, ...]:
    """Methods from plain data: a list of ``{name = "...", <option> = ...}`` tables (the options
    beside the name) or of ``{name = "...", options = {...}}``; MethodSpecs pass through."""
    if not isinstance(data, (list, tuple)):
        raise ConfigError(f"{where} must be a list of tables like {{ name = \"orthograd\" }}, got {data!r}")
    out = []
    for i, m in enumerate(data):
        if isinstance(m, MethodSpec):
            out.append(m)
            continue
        if not isinstance(m, dict) or "name" not in m:
            raise ConfigError(f"{where}[{i}] must be a table with a name, e.g. {{ name = \"orthograd\" }}; got {m!r}")
        rest = {k: v for k, v in m.items() if k != "name"}
        if set(rest) == {"options"} and isinstance(rest["options"], dict):
            rest = rest["options"]
        out.append(MethodSpec(m["name"], dict(rest)))
    return tuple(out)


@dataclass(frozen=True)
class RunSpec:
    task: TaskSpec
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    seed: int = 0
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    methods: tuple[MethodSpec, ...] = ()  # training methods, applied in this order (layerlab.methods)

    def __post_init__(self) -> None:
        if not isinstance(self.methods, tuple) or not all(isinstance(m, MethodSpec) for m in self.methods):
            object.__setattr__(self, "methods", method_specs(self.methods))

    def _identity(self) -> dict[str, Any]:
        """The spec as plain data; a run without probes (methods) has the identity it had before
        probes (methods) existed."""
        data = to_dict(self)
        if not self.methods:
            del data["methods"]
        if not self.probes.names:
            del data["probes"]
        elif not self.probes.stride:  # added later: runs without it keep their identity
            del data["probes"]["stride"]
        if not self.train.compile:  # added later: uncompiled runs keep their identity
            del data["train"]["compile"]
        return data

    @property
    def run_id(self) -> str:
        return config_hash(self._identity())

    def to_json(self) -> str:
        return canonical_json(self._identity())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return from_dict(cls, data, where="run spec")
