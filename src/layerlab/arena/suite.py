"""Suites: a TOML file of tasks x models x seeds x a learning-rate grid, with parameter budgets.

    name = "my_suite"
    seeds = [0, 1]
    lr = [1e-3, 3e-3]
    [train]                    # defaults for every run (TrainSpec keys)
    steps = 500
    [optim]                    # defaults for every run (OptimSpec keys except lr)
    weight_decay = 0.1
    [[tasks]]
    name = "mqar"              # a registered task
    params = { vocab = 128, length = 64, pairs = 8 }
    budget = 100_000           # parameter budget: each model's width is sized to it
    train = { steps = 800 }    # per-task overrides; also optim, lr, seeds, models (labels), probes
    [probes]                   # optional: instruments on every run (ProbeSpec keys)
    names = ["hessian", "spectra"]
    [[models]]
    label = "attention"
    backbone = "sequence"      # ModelSpec keys
    mixer = "attention"
    mixer_options = { n_heads = 4 }
    methods = [{ name = "orthograd" }]   # optional: training methods of this model's runs
    [[methods]]                # optional: a methods dimension beside the models
    label = "plain"            # every model runs once with each [[methods]] entry; the
    use = []                   # leaderboard row is "<model> · <methods label>"
    [[methods]]
    use = [{ name = "gradient_noise", eta = 0.3 }]   # label defaults to the names joined by "+"

A method table is ``{ name = "...", <option> = ... }`` (``layerlab.methods``); a run's methods are
its model's ``methods`` then its ``[[methods]]`` entry's ``use``, applied in that order.

Every model runs on every task whose input kind its backbone accepts (sequence backbone on token
tasks; classifier and deep_linear on vector tasks), unless the task lists `models`.

A suite without ``[[models]]`` trains the obvious default where there is one: vector tasks (digits,
``modular`` with ``encoding = "onehot"``, ``linear_teacher``) get the classifier with the MLP
(``label = "mlp"``, 2 layers, as in the ``quick`` suite). Token tasks have no obvious default; the
error names the table to add and shows a minimal one.

Strictness: unknown keys, wrong types (``lr = 1e-3`` instead of a list, ``seeds = "01"``), numbers
out of range (a non-positive learning rate or budget, a negative seed) and unknown tasks, blocks or
probes are ConfigErrors naming the key, when the suite is parsed; impossible task parameters and
widths are found when it is expanded. Both happen before any training starts or anything is written.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..config import check_keys, check_option_types, from_dict, merge
from ..errors import ConfigError, unknown_name
from ..lens.probes import check_probes
from ..models import BACKBONE_INPUTS, accepts, build_model, count_parameters
from ..registry import get as get_block
from ..methods import METHOD_SEP, check_methods
from ..spec import MethodSpec, ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec, method_specs
from ..tasks import Task, build_task, get_task_class

SEQUENCE_BACKBONES = ("sequence",)
MAX_WIDTH = 4096


@dataclass(frozen=True)
class TaskEntry:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    budget: int | None = None
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    lr: tuple[float, ...] = ()
    train: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    label: str
    spec: ModelSpec
    train: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    methods: tuple[MethodSpec, ...] = ()  # training methods of this model's runs


@dataclass(frozen=True)
class MethodsEntry:
    """One value of a suite's methods dimension: a label and the methods it composes (maybe none)."""

    label: str
    methods: tuple[MethodSpec, ...] = ()



@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskEntry, ...]
    models: tuple[ModelEntry, ...]
    seeds: tuple[int, ...] = (0,)
    lr: tuple[float, ...] = (1e-3,)
    train: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    budget_tolerance: float = 0.10
    description: str = ""
    baseline: str | None = None  # a model label: the leaderboard says who beats it, CIs separated
    probes: dict[str, Any] = field(default_factory=dict)  # ProbeSpec keys: instruments on every run
    methods: tuple[MethodsEntry, ...] = ()  # a methods dimension: every model runs with each entry


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    task_label: str
    model_label: str
    task: Task

    @property
    def labels(self) -> dict[str, Any]:
        return {"task": self.task_label, "model": self.model_label, "metric": self.task.metric,
                "higher_is_better": self.task.higher_is_better, "chance": self.task.chance}


# ---- loading ------------------------------------------------------------------------
_SUITE_KEYS = ("name", "description", "seeds", "lr", "train", "optim", "tasks", "models", "budget_tolerance",
               "baseline", "probes", "methods")
_MODEL_EXTRA = ("label", "train", "optim", "methods")
# ModelSpec keys a backbone does not read: giving one is a mistake (it would be silently ignored)
_UNUSED_BY = {"sequence": ("init", "init_scale"),
              "classifier": ("mixer", "mixer_options", "positions", "init", "init_scale"),
              "deep_linear": ("mixer", "mixer_options", "channel", "channel_options", "norm", "norm_options",
                              "norm_place", "positions"),
              "noprop": ("mixer", "mixer_options", "channel", "channel_options", "norm", "norm_options",
                         "norm_place", "positions", "init", "init_scale"),
              "set": ("positions", "init", "init_scale"),
              "operator": ("channel", "channel_options", "norm", "norm_options", "norm_place", "positions",
                           "init", "init_scale")}
# the model a suite without [[models]] gives its vector tasks (the quick suite's digits model)
DEFAULT_VECTOR_MODEL = ("mlp", ModelSpec(backbone="classifier", channel="mlp", n_layers=2))
MODELS_EXAMPLE = ('[[models]] label = "attention" backbone = "sequence" mixer = "attention" '
                  'mixer_options = { n_heads = 4 }')


def builtin_suites() -> list[str]:
    folder = resources.files("layerlab.arena") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name (``quick``), or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or _exists(path):
        text = read_toml_text(path, "suite file")
        default_name = path.stem
    else:
        if str(name_or_path) not in builtin_suites():
            raise unknown_name("suite", str(name_or_path), builtin_suites())
        text = (resources.files("layerlab.arena") / "suites" / f"{name_or_path}.toml").read_text()
        default_name = str(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"suite {name_or_path}: invalid TOML: {e}") from None
    return parse_suite(data, default_name=default_name)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system, say: not a file, so not a suite file
        return False


def read_toml_text(path: Path, what: str) -> str:
    """The text of a TOML file the user named; ConfigError (naming the file) when it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {str(path)!r} is a directory, not a TOML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table (key = value pairs), got {value!r}")
    return value


def _tables(value: Any, where: str, table: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where} must be {table} tables (or an array of inline tables), got {value!r}")
    return value


def check_seeds(value: Any, where: str) -> tuple[int, ...]:
    """A non-empty list of distinct integers in [0, 2**63)."""
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in value)
            or len(set(value)) != len(value)):
        raise ConfigError(f"{where} must be a non-empty list of distinct integers >= 0, e.g. [0, 1], got {value!r}")
    return tuple(value)


def check_lrs(value: Any, where: str) -> tuple[float, ...]:
    """A non-empty list of distinct finite learning rates > 0."""
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                       for x in value)
            or len(set(value)) != len(value)):
        raise ConfigError(f"{where} must be a non-empty list of distinct learning rates > 0, e.g. [1e-3, 3e-3], "
                          f"got {value!r}")
    return tuple(float(x) for x in value)


# the ranges of the numbers in [train] and [optim] (the specs check their names and types)
_RANGES: dict[type, dict[str, tuple[str, Any]]] = {
    TrainSpec: {"eval_every": (">= 0", lambda v: v >= 0), "eval_batch_size": (">= 1", lambda v: v >= 1),
                "checkpoint_every": (">= 0", lambda v: v >= 0),
                "target": ("a finite number", lambda v: v is None or math.isfinite(v)),
                "time_budget_s": ("> 0 seconds", lambda v: v is None or (math.isfinite(v) and v > 0))},
    OptimSpec: {"weight_decay": (">= 0", lambda v: math.isfinite(v) and v >= 0),
                "betas": ("two numbers in [0, 1)", lambda v: all(0 <= b < 1 for b in v)),
                "eps": ("> 0", lambda v: math.isfinite(v) and v > 0),
                "momentum": (">= 0", lambda v: math.isfinite(v) and v >= 0),
                "warmup_steps": (">= 0", lambda v: v >= 0),
                "min_lr_ratio": ("in [0, 1]", lambda v: 0 <= v <= 1),
                "grad_clip": (">= 0 (0 disables clipping)", lambda v: v is None or (math.isfinite(v) and v >= 0))},
}


def checked(cls: type, data: dict[str, Any], where: str) -> Any:
    """``from_dict(cls, data)`` with the numbers of a TrainSpec or OptimSpec in range."""
    spec = from_dict(cls, data, where=where)
    for key, (allowed, ok) in _RANGES.get(cls, {}).items():
        if not ok(getattr(spec, key)):
            raise ConfigError(f"{where}: {key} must be {allowed}, got {getattr(spec, key)!r}")
    return spec


def _input_kind(entry: TaskEntry) -> str:
    """'tokens' or 'vector', from the task's class where it is fixed (no data is built), else from the task."""
    kind = getattr(get_task_class(entry.name), "input_kind", None)
    return kind if isinstance(kind, str) else build_task(entry.name, **entry.params).input_kind


def _default_models(name: str, tasks: tuple[TaskEntry, ...]) -> list[ModelEntry]:
    """The models of a suite without [[models]]: the classifier with the MLP, where every task is a vector task."""
    for t in tasks:
        if (kind := _input_kind(t)) != "vector":
            what = "token sequences" if kind == "tokens" else f"{kind} inputs"
            raise ConfigError(
                f"suite {name!r} has no [[models]], and task {t.label or t.name!r} reads {what}, for "
                f"which there is no default model (vector tasks such as digits default to the classifier with "
                f"the MLP): add a [[models]] table, for example {MODELS_EXAMPLE} (one key per line)")
    label, spec = DEFAULT_VECTOR_MODEL
    return [ModelEntry(label=label, spec=spec)]


def _check_block_options(spec: ModelSpec, where: str) -> None:
    """Unknown block names, and options of the wrong type, fail when the suite is parsed."""
    kinds = {"sequence": ("mixer", "channel", "norm"), "classifier": ("channel", "norm")}.get(spec.backbone, ())
    for kind in kinds:
        options = getattr(spec, f"{kind}_options")
        entry = get_block(kind, getattr(spec, kind))
        placed = [k for k in ("device", "dtype") if k in options]
        if placed:
            raise ConfigError(f"{where}.{kind}_options sets {', '.join(placed)}: the trainer places every block "
                              f"(--device, [train] dtype); remove it")
        check_option_types(options, entry.cls, f"{where}.{kind}_options")


def _check_task_entry(t: TaskEntry, where: str) -> None:
    if not t.name:
        raise ConfigError(f"{where}.name must name a task, e.g. \"digits\"")
    if t.label is not None and not t.label:
        raise ConfigError(f"{where}.label must be non-empty text")
    if t.budget is not None and t.budget < 1:
        raise ConfigError(f"{where}.budget must be a parameter count >= 1, got {t.budget}")
    if t.seeds:
        check_seeds(t.seeds, f"{where}.seeds")
    if t.lr:
        check_lrs(t.lr, f"{where}.lr")
    for key in ("params", "train", "optim", "probes"):
        _table(getattr(t, key), f"{where}.{key}")
    if "lr" in t.optim:
        raise ConfigError(f"{where}.optim sets lr: give learning rates as {where}.lr = [...] (the grid)")


def parse_suite(data: dict[str, Any], default_name: str = "suite") -> Suite:
    _table(data, "a suite")
    check_keys(data, _SUITE_KEYS, "suite")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"suite `name` must be non-empty text, got {name!r}")
    for key in ("description", "baseline"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"suite {name!r}: `{key}` must be text, got {data[key]!r}")
    if not data.get("tasks"):
        raise ConfigError(f"suite {name!r} has no [[tasks]]: add one, for example "
                          f'[[tasks]] name = "digits" (one key per line)')
    tasks = []
    for i, t in enumerate(_tables(data["tasks"], f"suite {name!r} `tasks`", "[[tasks]]")):
        where = f"suite {name!r} tasks[{i}]"
        if "name" not in t:
            raise ConfigError(f"{where} needs `name` (a registered task, e.g. \"digits\")")
        entry = from_dict(TaskEntry, t, where=where)
        _check_task_entry(entry, where)
        tasks.append(entry)
    tasks = tuple(tasks)
    for t in tasks:  # unknown task names fail here, with suggestions
        get_task_class(t.name)
    models = []
    model_keys = [f.name for f in dataclasses.fields(ModelSpec)] + list(_MODEL_EXTRA)
    given = data.get("models") or []
    for i, m in enumerate(_tables(given, f"suite {name!r} `models`", "[[models]]")):
        where = f"suite {name!r} models[{i}]"
        check_keys(m, model_keys, where)
        rest = {k: v for k, v in m.items() if k not in _MODEL_EXTRA}
        spec = from_dict(ModelSpec, rest, where=where)
        unused = [k for k in _UNUSED_BY.get(spec.backbone, ()) if k in rest]
        if unused:
            raise ConfigError(f"{where}: backbone {spec.backbone!r} does not use {', '.join(map(repr, unused))}; "
                              f"remove {'it' if len(unused) == 1 else 'them'} (or choose another backbone)")
        _check_block_options(spec, where)
        label = m.get("label", spec.label())
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}.label must be non-empty text, got {label!r}")
        train, optim = _table(m.get("train", {}), f"{where}.train"), _table(m.get("optim", {}), f"{where}.optim")
        if "lr" in optim:
            raise ConfigError(f"{where}.optim sets lr: give learning rates as the suite's lr = [...] "
                              f"(or a task's lr)")
        methods = method_specs(m.get("methods", []), f"{where}.methods")
        check_methods(methods, where)
        models.append(ModelEntry(label=label, spec=spec, train=train, optim=optim, methods=methods))
    if not models:
        models = _default_models(name, tasks)
    labels = [m.label for m in models]
    # one label may name a vector model and a token model (the same block in two backbones):
    # no task runs both, so the leaderboard's rows stay unambiguous
    keyed = [(m.label, m.spec.backbone in SEQUENCE_BACKBONES) for m in models]
    dup = {lab for lab, kind in keyed if keyed.count((lab, kind)) > 1}
    if dup:
        raise ConfigError(f"suite {name!r}: model labels must be unique among models of the same input kind, "
                          f"repeated: {sorted(dup)}")
    if "baseline" in data and data["baseline"] not in labels:
        raise unknown_name(f"baseline model label of suite {name!r}", str(data["baseline"]), labels)
    for t in tasks:
        for lab in t.models:
            if lab not in labels:
                raise unknown_name(f"model label (in task {t.label or t.name!r})", lab, labels)
    top = {k: data[k] for k in ("seeds", "lr", "train", "optim", "budget_tolerance", "description", "baseline",
                                "probes") if k in data}
    if "seeds" in top:
        top["seeds"] = check_seeds(top["seeds"], f"suite {name!r} seeds")
    if "lr" in top:
        top["lr"] = check_lrs(top["lr"], f"suite {name!r} lr")
    if "budget_tolerance" in top:
        tol = top["budget_tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= 1:
            raise ConfigError(f"suite {name!r} budget_tolerance must be a fraction in (0, 1], e.g. 0.1, got {tol!r}")
        top["budget_tolerance"] = float(tol)
    for key in ("train", "optim", "probes"):
        _table(top.get(key, {}), f"suite {name!r} [{key}]")
    if "lr" in top.get("optim", {}):
        raise ConfigError(f"suite {name!r} [optim] sets lr: give learning rates as lr = [...] (the grid)")
    # types and ranges now, so a typo fails before any training (per-task overrides: when expanded)
    checked(TrainSpec, top.get("train", {}), f"suite {name!r} [train]")
    checked(OptimSpec, top.get("optim", {}), f"suite {name!r} [optim]")
    for where, probes in [(f"suite {name!r} [probes]", top.get("probes", {}))] + [
            (f"suite {name!r} task {t.label or t.name!r} probes", merge(top.get("probes", {}), t.probes)) for t in tasks]:
        probe_spec = from_dict(ProbeSpec, probes, where=where)
        check_probes(probe_spec.names, probe_spec.options)  # unknown probes or options fail before training
    return Suite(name=name, tasks=tasks, models=tuple(models), methods=_methods_dimension(name, data), **top)


def _methods_dimension(name: str, data: dict[str, Any]) -> tuple[MethodsEntry, ...]:
    """The suite's [[methods]] entries (``label``, ``use``), checked against the method registry."""
    out = []
    for i, entry in enumerate(_tables(data.get("methods", []), f"suite {name!r} `methods`", "[[methods]]")):
        where = f"suite {name!r} methods[{i}]"
        check_keys(entry, ("label", "use"), where)
        use = method_specs(entry.get("use", []), f"{where}.use")
        check_methods(use, where)
        label = entry.get("label", "+".join(m.name for m in use) or "none")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}.label must be non-empty text, got {label!r}")
        out.append(MethodsEntry(label, use))
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"suite {name!r}: [[methods]] labels must be unique, got {labels}")
    return tuple(out)


# ---- sizing -------------------------------------------------------------------------
def count_for(spec: ModelSpec, task: Task) -> int:
    """Parameter count of `spec` on `task`, built without allocating memory where possible."""
    try:
        with torch.device("meta"):
            return count_parameters(build_model(spec, task))
    except (NotImplementedError, RuntimeError):
        return count_parameters(build_model(spec, task))


def size_to_budget(spec: ModelSpec, task: Task, budget: int, tolerance: float = 0.10) -> tuple[ModelSpec, int]:
    """The width (a multiple of the head count) whose parameter count is closest to `budget`.

    Raises ConfigError if even the closest misses the budget by more than `tolerance`.
    """
    step = max(spec.width_multiple, 1)
    best: tuple[int, int] | None = None  # (|miss|, width)
    counts: dict[int, int] = {}
    width = step
    too_small: ConfigError | None = None
    while width <= MAX_WIDTH:
        try:
            n = count_for(dataclasses.replace(spec, d_model=width), task)
        except ConfigError as e:  # some blocks need a minimum width (channels per group, ...)
            if best is not None:
                raise
            too_small, width = e, width + step
            continue
        counts[width] = n
        if best is None or abs(n - budget) < best[0]:
            best = (abs(n - budget), width)
        if n > budget:
            break
        width += step
    if best is None:
        raise too_small or ConfigError(f"model {spec.label()!r}: no width up to {MAX_WIDTH} builds")
    width = best[1]
    achieved = counts[width]
    if abs(achieved - budget) > tolerance * budget:
        raise ConfigError(
            f"model {spec.label()!r} cannot meet the parameter budget {budget:,} on task {task.name!r}: the "
            f"closest width {width} gives {achieved:,} parameters ({100 * (achieved - budget) / budget:+.1f}%, "
            f"allowed ±{100 * tolerance:.0f}%). Change n_layers or the block options, or the budget."
        )
    return dataclasses.replace(spec, d_model=width), achieved


# ---- expansion ----------------------------------------------------------------------
def _accepts(backbone: str, task: Task) -> bool:
    return accepts(backbone, task.input_kind)


def expand(suite: Suite) -> list[PlannedRun]:
    """Every run of the suite, validated: tasks built, models sized and built once, specs strict."""
    planned: list[PlannedRun] = []
    for entry in suite.tasks:
        task_label = entry.label or entry.name
        task = build_task(entry.name, **entry.params)
        models = [m for m in suite.models if _accepts(m.spec.backbone, task)
                  and (m.label in entry.models if entry.models else True)]
        if not models:
            fits = [b for b, kinds in BACKBONE_INPUTS.items() if task.input_kind in kinds] or ["classifier"]
            needs = f"backbone = \"{fits[0]}\""
            raise ConfigError(f"suite {suite.name!r}: no model fits task {task_label!r} ({task.input_kind} inputs): "
                              f"add a [[models]] table with {needs}"
                              + (f", for example {MODELS_EXAMPLE}" if task.input_kind == "tokens" else ""))
        for lab in set(entry.models) - {m.label for m in models}:
            backbone = next(m.spec.backbone for m in suite.models if m.label == lab)
            raise ConfigError(f"model {lab!r} (backbone {backbone!r}) cannot run task "
                              f"{task_label!r} ({task.input_kind} inputs)")
        for m in models:
            where = f"model {m.label!r} on task {task_label!r}"
            if entry.budget is not None:
                model_spec, _ = size_to_budget(m.spec, task, entry.budget, suite.budget_tolerance)
            else:
                model_spec = m.spec
            try:
                count_for(model_spec, task)  # builds it: bad widths/heads/options fail here, before training
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            train = checked(TrainSpec, merge(merge(suite.train, entry.train), m.train), f"{where} train")
            try:
                task.check_batch_size(train.batch_size)
            except ConfigError as e:
                raise ConfigError(f"{where} train: {e}") from None
            probes = from_dict(ProbeSpec, merge(suite.probes, entry.probes), where=f"{where} probes")
            optim_base = merge(merge(suite.optim, entry.optim), m.optim)
            for lr in entry.lr or suite.lr:
                optim = checked(OptimSpec, {**optim_base, "lr": lr}, f"{where} optim")
                for choice in suite.methods or (None,):
                    methods = m.methods + (choice.methods if choice else ())
                    label = f"{m.label}{METHOD_SEP}{choice.label}" if choice else m.label
                    for seed in entry.seeds or suite.seeds:
                        spec = RunSpec(task=TaskSpec(entry.name, dict(entry.params)), model=model_spec,
                                       optim=optim, train=train, seed=seed, probes=probes, methods=methods)
                        planned.append(PlannedRun(spec, task_label, label, task))
    return planned

