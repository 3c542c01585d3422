"""Derived runs: a compression technique applied to a stored run's checkpoint, evaluated on the run's
task, its savings measured, everything recorded in the store (``layerlab compress``).

A derived run is a row of the store's ``runs`` (status, provenance, results, events, like a trained
run) with its derivation in the ``derived`` table: the parent run, the technique, the level, every
option (defaults included), the seed and the size of the calibration batch, the technique's paper.

Identity: ``derived_id(parent, technique, level, options, seed, calibration)``, the hash of those
values, options that equal the technique's defaults left out (``--option bias=false`` where false is
the default is the same derived run as no option). Compressing again with the same arguments finds
the same run: a ``done`` one is skipped, an unfinished one (``running`` after a kill, ``failed``) is
done again. Each derived run is written by one transaction at its end (results, savings and status
together), so a killed ``layerlab compress`` loses nothing already recorded.

What a derived run holds (``store.results(run_id)``):

- one split per evaluation split of the task (``val``, ``test``, extrapolation splits): the metrics of
  ``task.evaluate`` on the compressed model, as the Trainer's final evaluation computes them;
- ``savings``: the compressed model's cost against the dense parent's, both measured in the same call
  (``compress.savings``: nonzero parameters, bits, wall-time ratio, memory; ratios ``*_ratio``).

The technique sees the parent's final checkpoint in eval mode and a ``CompressContext``: the task, a
calibration batch drawn from the task's *training* split with a generator seeded from ``seed`` (the
same for every level, so the levels of a sweep see the same batch), a generator seeded with
``seed``, and the task's training loss. The global RNG is seeded with ``seed`` around the technique
and restored afterwards. A technique that modifies the model it was given (instead of a copy) fails
its run, and the next level starts from a fresh copy of the checkpoint.
"""
from __future__ import annotations

import inspect
import json
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..arena.inspect_run import checkpoint_model
from ..arena.provenance import device_name, git_revision, package_versions
from ..arena.store import Store
from ..config import config_hash
from ..errors import ConfigError
from ..train.trainer import resolve_device
from .registry import TECHNIQUES, CompressContext, apply_technique, check_level, check_options, technique_options
from .savings import measure_savings

CALIBRATION_SALT = 0x9E3779B9  # the calibration batch's generator differs from the technique's, reproducibly
DEFAULT_CALIBRATION = 256


@dataclass(frozen=True)
class Plan:
    """A validated compression: the parent, the technique, its full options, and one derived run id
    per level (in the order given)."""

    parent_id: str
    technique: str
    levels: tuple[float, ...]
    run_ids: tuple[str, ...]
    options: dict[str, Any]  # every option, defaults included
    seed: int
    calibration: int


@dataclass
class Outcome:
    """One level of a compression: its derived run, what became of it (``done``, ``failed`` or
    ``skipped``: done before), its results (split -> metrics, ``savings`` included) and error."""

    run_id: str
    level: float
    status: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str = ""


def _given_options(technique: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that differ from the technique's defaults (what identifies a derived run)."""
    defaults = technique_options(technique)
    return {k: v for k, v in sorted(options.items()) if k not in defaults or defaults[k] != v}


def derived_id(parent_id: str, technique: str, level: float, options: dict[str, Any], seed: int,
               calibration: int) -> str:
    """The id of the derived run: a hash of its parent, technique, level, non-default options, seed and
    calibration size (hexadecimal, as run ids are)."""
    return config_hash({"derived_from": parent_id, "technique": technique, "level": float(level),
                        "options": _given_options(technique, options), "seed": int(seed),
                        "calibration": int(calibration)})


def _required_options(technique: str) -> list[str]:
    params = list(inspect.signature(TECHNIQUES[technique]).parameters.values())[3:]
    return [p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def plan_compress(store: Store, parent_id: str, technique: str, levels: Sequence[float], *,
                  options: dict[str, Any] | None = None, seed: int = 0,
                  calibration: int = DEFAULT_CALIBRATION) -> Plan:
    """Check everything before anything is written: the technique, each level, the options, the seed,
    the calibration size and the parent (a finished trained run with a checkpoint). ConfigError
    naming the problem otherwise."""
    options = dict(options or {})
    TECHNIQUES.entry(technique)  # an unknown name: UnknownNameError with the closest names
    if not levels:
        raise ConfigError(f"no level given for technique {technique!r}: give --level L or --levels L1,L2,...")
    levels = tuple(dict.fromkeys(float(level) for level in levels))
    for level in levels:
        if not math.isfinite(level):
            raise ConfigError(f"level {level} of technique {technique!r} is not a finite number")
        check_level(technique, level)
    check_options(technique, options)
    missing = [k for k in _required_options(technique) if k not in options]
    if missing:
        raise ConfigError(f"technique {technique!r} needs option(s) {missing}: give --option {missing[0]}=VALUE")
    try:
        json.dumps(options, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(f"options of {technique!r} must be plain values (numbers, strings, booleans, lists); "
                          f"got {options!r}") from None
    if not (isinstance(seed, int) and 0 <= seed < 2**63):
        raise ConfigError(f"--seed must be a whole number in [0, 2**63), got {seed!r}")
    if not (isinstance(calibration, int) and calibration >= 1):
        raise ConfigError(f"--calibration must be >= 1 (training examples the technique may read), got {calibration!r}")
    parent = store.run(parent_id)  # KeyError for an unknown run
    pid = parent["run_id"]
    d = store.derivation(pid)
    if d is not None:
        raise ConfigError(f"run {pid} is a derived run ({d['technique']} at level {d['level']:g} of run "
                          f"{d['parent_id']}); compress its parent {d['parent_id']} instead")
    if parent["status"] != "done":
        raise ConfigError(f"run {pid} is {parent['status']}, not done: compress acts on a finished run's final "
                          f"checkpoint (`layerlab run SUITE` finishes it)")
    if not store.checkpoint_path(pid).exists():
        raise ConfigError(f"run {pid} has no checkpoint in {store.root}: it was trained without one, or the file "
                          f"was removed; train it again to compress it")
    from ..tasks import build_task

    spec = store.spec(pid)
    build_task(spec.task.name, **spec.task.params).check_batch_size(calibration)
    full = {**technique_options(technique), **options}
    ids = tuple(derived_id(pid, technique, level, full, seed, calibration) for level in levels)
    return Plan(pid, technique, levels, ids, full, seed, calibration)


def calibration_batch(task: Any, size: int, seed: int) -> Any:
    """``size`` examples of the task's training split, drawn with a generator seeded from ``seed``."""
    return task.train_batch(size, torch.Generator().manual_seed(seed ^ CALIBRATION_SALT))


def _on(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    batch = batch.to(device)
    if batch.inputs.is_floating_point():
        batch = type(batch)(batch.inputs.to(dtype), batch.targets, batch.mask)
    return batch


def _same_weights(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == snapshot.keys() and all(
        state[k].shape == v.shape and torch.equal(state[k], v) for k, v in snapshot.items())


def compress_run(store: Store, parent_id: str, technique: str, levels: Sequence[float], *,
                 options: dict[str, Any] | None = None, seed: int = 0, calibration: int = DEFAULT_CALIBRATION,
                 device: str = "cpu", repeats: int = 15, plan: Plan | None = None,
                 on_start: Callable[[float, str], None] | None = None,
                 on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Apply ``technique`` at each level to the final checkpoint of run ``parent_id``; record one derived
    run per level (skipping those done before). Returns the outcome of each level, in order.
    ``on_start(level, run_id)`` and ``on_done(outcome)`` report progress."""
    plan = plan or plan_compress(store, parent_id, technique, levels, options=options, seed=seed,
                                 calibration=calibration)
    entry = TECHNIQUES.entry(plan.technique)
    given = _given_options(plan.technique, plan.options)
    dev = resolve_device(device)
    spec = store.spec(plan.parent_id)
    dtype = getattr(torch, spec.train.dtype)
    _, task, dense = checkpoint_model(store, plan.parent_id, device)
    dense.eval()
    snapshot = {k: v.detach().clone() for k, v in dense.state_dict().items()}
    batch = _on(calibration_batch(task, plan.calibration, plan.seed), dev, dtype)
    provenance = {"git_revision": git_revision(), "versions": package_versions(), "device": device_name(dev),
                  "data_checksum": task.checksum()}
    paper = entry.paper.cite() if entry.paper else None
    outcomes = []
    for level, rid in zip(plan.levels, plan.run_ids):
        store.add_derived(rid, plan.parent_id, {
            "technique": plan.technique, "level": level, "level_kind": entry.meta.get("level_kind"),
            "options": plan.options, "seed": plan.seed, "calibration": plan.calibration, "paper": paper})
        row = store.run(rid)
        if row["status"] == "done":
            outcome = Outcome(rid, level, "skipped", store.results(rid))
        else:
            if on_start is not None:
                on_start(level, rid)
            if row["status"] in ("running", "failed"):
                store.add_event(rid, f"{row['status']} before (attempt {row['attempts']}); compressing again")
            store.mark_running(rid, provenance)
            outcome = _derive(store, rid, level, plan, given, task, dense, snapshot, batch, dev, spec, repeats)
            if not _same_weights(dense, snapshot):  # a technique that broke the rules: start clean
                _, _, dense = checkpoint_model(store, plan.parent_id, device)
                dense.eval()
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes


def _derive(store: Store, rid: str, level: float, plan: Plan, given: dict[str, Any], task: Any, dense: nn.Module,
            snapshot: dict[str, torch.Tensor], batch: Any, dev: torch.device, spec: Any, repeats: int) -> Outcome:
    """One derived run: compress, evaluate, measure, record (one transaction at the end). ``snapshot``:
    the parent's weights, to find a technique that modifies its input."""
    t0 = time.time()
    try:
        ctx = CompressContext(task=task, calibration=batch, generator=torch.Generator().manual_seed(plan.seed),
                              loss_fn=lambda m, b: task.loss(m(b.inputs), b), device=dev)
        fork = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(plan.seed)
            compressed = apply_technique(plan.technique, dense, level, ctx, **given)
        if not isinstance(compressed, nn.Module):
            raise ConfigError(f"technique {plan.technique!r} returned {type(compressed).__name__}, not an nn.Module")
        if compressed is dense or not _same_weights(dense, snapshot):
            raise ConfigError(f"technique {plan.technique!r} modified the model it was given; a technique returns "
                              f"a compressed copy (copy.deepcopy the model first)")
        compressed.eval()
        results = {split: task.evaluate(compressed, split, batch_size=spec.train.eval_batch_size)
                   for split in task.eval_splits}
        state_length = task.max_length if task.input_kind == "tokens" else None
        savings = measure_savings(dense, compressed, batch.inputs, repeats=repeats, state_length=state_length)
    except Exception as e:  # a failing level is recorded; the sweep goes on
        error = f"{type(e).__name__}: {e}"
        store.finish(rid, status="failed", error=f"{error}\n{traceback.format_exc(limit=8)}",
                     wall_time_s=time.time() - t0)
        return Outcome(rid, level, "failed", error=error)
    results["savings"] = savings.as_dict()
    store.finish(rid, status="done", results=results, n_params=savings.compressed.nonzero_params,
                 wall_time_s=time.time() - t0, step=1)
    if savings.compressed.unused:
        store.add_event(rid, f"stored but not read by the forward pass (not counted): "
                             f"{', '.join(savings.compressed.unused)}")
    return Outcome(rid, level, "done", results)
