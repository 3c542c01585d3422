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
Everything is checked when the suite is expanded, before any training starts.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..config import check_keys, from_dict, merge
from ..errors import ConfigError, unknown_name
from ..lens.probes import check_probes
from ..models import build_model, count_parameters
from ..methods import METHOD_SEP, check_methods
from ..spec import MethodSpec, ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec, method_specs
from ..tasks import Task, build_task

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


def builtin_suites() -> list[str]:
    folder = resources.files("layerlab.arena") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name (``quick``), or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise ConfigError(f"suite file {str(path)!r} does not exist")
        text = path.read_text()
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


def parse_suite(data: dict[str, Any], default_name: str = "suite") -> Suite:
    check_keys(data, _SUITE_KEYS, "suite")
    name = data.get("name", default_name)
    if not data.get("tasks"):
        raise ConfigError(f"suite {name!r} has no [[tasks]]")
    if not data.get("models"):
        raise ConfigError(f"suite {name!r} has no [[models]]")
    tasks = tuple(from_dict(TaskEntry, t, where=f"suite {name!r} tasks[{i}]") for i, t in enumerate(data["tasks"]))
    models = []
    model_keys = [f.name for f in dataclasses.fields(ModelSpec)] + list(_MODEL_EXTRA)
    for i, m in enumerate(data["models"]):
        where = f"suite {name!r} models[{i}]"
        check_keys(m, model_keys, where)
        rest = {k: v for k, v in m.items() if k not in _MODEL_EXTRA}
        spec = from_dict(ModelSpec, rest, where=where)
        methods = method_specs(m.get("methods", []), f"{where}.methods")
        check_methods(methods, where)
        models.append(ModelEntry(label=m.get("label", spec.label()), spec=spec,
                                 train=m.get("train", {}), optim=m.get("optim", {}), methods=methods))
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
        top["seeds"] = tuple(top["seeds"])
    if "lr" in top:
        top["lr"] = tuple(float(x) for x in top["lr"])
    for key in ("train", "optim"):  # check keys now, so a typo fails before any training
        check_keys(top.get(key, {}), [f.name for f in dataclasses.fields(TrainSpec if key == "train" else OptimSpec)],
                   f"suite {name!r} [{key}]")
    for where, probes in [(f"suite {name!r} [probes]", top.get("probes", {}))] + [
            (f"suite {name!r} task {t.label or t.name!r} probes", merge(top.get("probes", {}), t.probes)) for t in tasks]:
        probe_spec = from_dict(ProbeSpec, probes, where=where)
        check_probes(probe_spec.names, probe_spec.options)  # unknown probes or options fail before training
    return Suite(name=name, tasks=tasks, models=tuple(models), methods=_methods_dimension(name, data), **top)


def _methods_dimension(name: str, data: dict[str, Any]) -> tuple[MethodsEntry, ...]:
    """The suite's [[methods]] entries (``label``, ``use``), checked against the method registry."""
    out = []
    given = data.get("methods", [])
    if not isinstance(given, list) or not all(isinstance(e, dict) for e in given):
        raise ConfigError(f"suite {name!r} `methods` must be [[methods]] tables, got {given!r}")
    for i, entry in enumerate(given):
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
    return (backbone in SEQUENCE_BACKBONES) == (task.input_kind == "tokens")


def expand(suite: Suite) -> list[PlannedRun]:
    """Every run of the suite, validated: tasks built, models sized and built once, specs strict."""
    planned: list[PlannedRun] = []
    for entry in suite.tasks:
        task_label = entry.label or entry.name
        task = build_task(entry.name, **entry.params)
        models = [m for m in suite.models if _accepts(m.spec.backbone, task)
                  and (m.label in entry.models if entry.models else True)]
        if not models:
            raise ConfigError(f"suite {suite.name!r}: no model fits task {task_label!r} ({task.input_kind} inputs)")
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
            train = from_dict(TrainSpec, merge(merge(suite.train, entry.train), m.train), where=f"{where} train")
            probes = from_dict(ProbeSpec, merge(suite.probes, entry.probes), where=f"{where} probes")
            optim_base = merge(merge(suite.optim, entry.optim), m.optim)
            for lr in entry.lr or suite.lr:
                optim = from_dict(OptimSpec, {**optim_base, "lr": lr}, where=f"{where} optim")
                for choice in suite.methods or (None,):
                    methods = m.methods + (choice.methods if choice else ())
                    label = f"{m.label}{METHOD_SEP}{choice.label}" if choice else m.label
                    for seed in entry.seeds or suite.seeds:
                        spec = RunSpec(task=TaskSpec(entry.name, dict(entry.params)), model=model_spec,
                                       optim=optim, train=train, seed=seed, probes=probes, methods=methods)
                        planned.append(PlannedRun(spec, task_label, label, task))
    return planned

