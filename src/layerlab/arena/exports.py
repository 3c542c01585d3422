"""What the exports to other tools (MLflow, TensorBoard) read from the store, one run at a time.

`runs_to_export` walks the store's runs (or one suite's) and gives each as an `ExportRun`: the spec
flattened into parameters, the labels the suite gave it, the metric series, the final results and the
probe arrays. Each run carries a `fingerprint` of what it holds, so an exporter can tell a run it
already wrote unchanged (skip it) from one that has grown since (update it) without reading the target.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError, unknown_name
from .store import Store

# Bumped when an exporter changes what it writes for a run, so that a re-export rewrites every run.
EXPORT_FORMAT = 1


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module` for an optional export; ConfigError saying how to install it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} needs the optional package for it, which is not installed here ({e}): "
                          f"pip install layerlab[{extra}]") from None


def flatten_spec(spec: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.003, "betas": [0.9, 0.999]}}`` -> ``{"optim.lr": "0.003", "optim.betas":
    "[0.9, 0.999]"}``: every leaf as text (strings as they are, everything else as JSON); an empty
    table stays a key, written ``{}``."""
    out: dict[str, str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_spec(value, name + "."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


@dataclass
class ExportRun:
    """One run of the store, as the exporters write it."""

    run_id: str
    row: dict[str, Any]                 # the store's ``runs`` row (status, step, provenance, times)
    spec: dict[str, Any]
    suites: list[str]
    task: str                           # the suite's labels where it has them, else the spec's names
    model: str
    derived: dict[str, Any] | None      # parent, technique, level, ... for a derived run
    metrics: list[dict[str, Any]]       # step, split, name, value (by step)
    results: dict[str, dict[str, float]]
    arrays: list[dict[str, Any]]        # step, name, file (absolute path of the .npy)
    fingerprint: str = field(default="")

    @property
    def params(self) -> dict[str, str]:
        flat = flatten_spec(self.spec)
        if self.derived:
            flat.update(flatten_spec({"derived": self.derived}))
        return flat

    @property
    def time_s(self) -> float:
        """When the run started (created, if it never did): the time the exporters stamp its records with."""
        return float(self.row["started"] or self.row["created"])

    @property
    def last_step(self) -> int:
        return int(self.row["step"])

    def display_name(self) -> str:
        lr, seed = self.spec["optim"]["lr"], self.spec["seed"]
        what = f"{self.derived['technique']} {self.derived['level']:g}" if self.derived else f"lr {lr:g} · seed {seed}"
        return f"{self.task} · {self.model} · {what} · {self.run_id[:8]}"


def _fingerprint(run: ExportRun) -> str:
    body = json.dumps([EXPORT_FORMAT, run.row["status"], run.row["step"], run.row["finished"], run.suites,
                       [(m["step"], m["split"], m["name"], m["value"]) for m in run.metrics], run.results,
                       [(a["step"], a["name"]) for a in run.arrays]], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def check_suite(store: Store | None, suite: str | None) -> None:
    """ConfigError when `suite` is given but the store has no run of it."""
    if suite is not None:
        have = store.suites() if store is not None else []
        if suite not in have:
            raise unknown_name("suite in the store", suite, have)


def runs_to_export(store: Store, suite: str | None = None) -> Iterator[ExportRun]:
    """Every run of the store (of `suite`), oldest first, as `ExportRun`s, read one at a time."""
    check_suite(store, suite)
    labels: dict[str, dict[str, Any]] = {}
    memberships: dict[str, list[str]] = {}
    for s in store.suites():
        for r in store.suite_rows(s):
            labels.setdefault(r["run_id"], r)
            memberships.setdefault(r["run_id"], []).append(s)
    for row in store.runs(suite=suite):
        rid = row["run_id"]
        spec = json.loads(row["spec_json"])
        lab = labels.get(rid, {})
        folder = store.artifact_dir(rid)
        run = ExportRun(
            run_id=rid, row=row, spec=spec, suites=memberships.get(rid, []),
            task=lab.get("task") or spec["task"]["name"],
            model=lab.get("model") or store.spec(rid).model.label(),
            derived=store.derivation(rid), metrics=store.metrics(rid), results=store.results(rid),
            arrays=[{"step": a["step"], "name": a["name"], "file": Path(folder) / a["path"]}
                    for a in store.artifacts(rid)])
        run.fingerprint = _fingerprint(run)
        yield run


@dataclass
class ExportSummary:
    """What one export did: run ids written for the first time, rewritten (they changed), left as they were."""

    target: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing_arrays: list[str] = field(default_factory=list)  # indexed .npy files absent from the store folder

    def line(self) -> str:
        n = len(self.created) + len(self.updated) + len(self.unchanged)
        return (f"{n} runs: {len(self.created)} new, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged")
