"""Check a claim card: run its setting, apply its rule, record the verdict in the store.

For a suite card, the check trains, through the arena's runner, only the tasks and models that the
rule names (finished runs are reused, interrupted ones resume), under the store suite name
``<card id>@<8 hex of its run ids>``, so that the leaderboard of that name holds exactly these runs.
The learning rate of each (task, model) is the leaderboard's, chosen on the validation split
(``layerlab.arena.leaderboard.board``); the rule then reads the per-seed values of the card's metric
on its test split at that learning rate, from finished runs only (diverged and failed seeds are
counted in the details). A measure card calls its measurement once per seed.

The verdict is recorded with the card id and hash, the git revision, the run ids, the rule's
statistic and 95% interval, the per-model numbers, and the wall time of the check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..arena.executor import Executor, LocalExecutor
from ..arena.leaderboard import board
from ..arena.provenance import git_revision
from ..arena.runner import run_suite
from ..arena.store import Store
from ..arena.suite import PlannedRun, Suite, expand
from ..errors import ConfigError, unknown_name
from .card import Card
from .measures import get_measure
from .rules import Key, Outcome, Sample, describe, evaluate

# metrics whose direction is known when a card names one that is not its task's main metric
_LOWER = ("loss", "bpc", "mse", "error", "perplexity", "ece")
_HIGHER = ("accuracy", "exact_match")


@dataclass(frozen=True)
class CheckResult:
    card: Card
    outcome: Outcome
    record: dict[str, Any]
    verdict_id: int
    seconds: float


def restrict(suite: Suite, refs: list[Key]) -> Suite:
    """The part of `suite` that the rule reads: its named tasks, each with only its named models."""
    wanted: dict[str, list[str]] = {}
    for task, model in refs:
        if task is not None and model is not None and model not in wanted.setdefault(task, []):
            wanted[task].append(model)
    tasks = tuple(dataclasses.replace(t, models=tuple(m for m in (t.models or [x.label for x in suite.models])
                                                      if m in wanted[t.label or t.name]))
                  for t in suite.tasks if (t.label or t.name) in wanted)
    keep = {m for ms in wanted.values() for m in ms}
    models = tuple(m for m in suite.models if m.label in keep)
    baseline = suite.baseline if suite.baseline in keep else None
    return dataclasses.replace(suite, tasks=tasks, models=models, baseline=baseline)


def store_suite_name(card: Card, run_ids: list[str]) -> str:
    """The name the card's runs are filed under: ``<card id>@<8 hex of the sorted run ids>``."""
    return f"{card.id}@{hashlib.sha256(' '.join(sorted(run_ids)).encode()).hexdigest()[:8]}"


def _direction(card: Card, metric: str, task_metric: str, task_hib: bool) -> bool:
    if card.metric.higher_is_better is not None:
        return card.metric.higher_is_better
    if metric == task_metric:
        return task_hib
    if metric in _LOWER or metric.endswith("loss"):
        return False
    if metric in _HIGHER:
        return True
    raise ConfigError(f"card {card.id!r}: the direction of metric {metric!r} is unknown; "
                      f"add `direction = \"higher\"` or \"lower\" to its [metric] table")


def plan(card: Card) -> tuple[Suite, list[PlannedRun]]:
    """The part of the card's suite that its rule reads, renamed for the store, and its runs:
    everything validated (blocks, widths, budgets, the metric's split) before anything trains."""
    whole = card.resolve_suite()
    suite = restrict(whole, card.rule.refs())
    if card.suite is None and suite != whole:  # an inline suite is the card's own: all of it must be valid
        expand(whole)
    planned = expand(suite)
    split = card.metric.split
    for p in planned:
        if card.metric.name is not None and card.metric.name not in p.task.metric_names:
            raise unknown_name(f"metric of task {p.task_label!r} in card {card.id!r} [metric].name",
                               card.metric.name, p.task.metric_names)
        if split != "test" and split not in p.task.eval_splits:
            raise ConfigError(f"card {card.id!r}: task {p.task_label!r} has no split {split!r}; "
                              f"its test splits: {', '.join(s for s in p.task.eval_splits if s.startswith('test'))}")
    name = store_suite_name(card, [p.spec.run_id for p in planned])
    return dataclasses.replace(suite, name=name), planned


def _suite_samples(card: Card, store: Store, *, executor: Executor, device: str, console: Console,
                   show_board: bool) -> tuple[dict[Key, Sample], list[str], str, dict[str, Any]]:
    refs = card.rule.refs()
    suite, planned = plan(card)
    split = card.metric.split
    run_ids = [p.spec.run_id for p in planned]
    name = suite.name
    run_suite(suite, store, executor=executor, device=device, console=console, show_board=show_board)

    boards = board(store, name)
    rows = store.suite_rows(name)
    budgets = {t.label or t.name: t.budget for t in suite.tasks}
    steps = {(p.task_label, p.model_label): p.spec.train.steps for p in planned}
    data: dict[Key, Sample] = {}
    for task, model in dict.fromkeys(refs):
        entry = next((e for e in boards.get(task, []) if e.model == model), None)
        if entry is None:
            raise ConfigError(f"card {card.id!r}: no runs of model {model!r} on task {task!r} in the store")
        metric = card.metric.name or entry.metric
        hib = _direction(card, metric, entry.metric, entry.higher_is_better)
        chosen = [r for r in rows if r["task"] == task and r["model"] == model and r["lr"] == entry.lr]
        values: dict[int, float] = {}
        for r in chosen:
            if r["status"] != "done":
                continue
            res = store.results(r["run_id"])
            if metric not in res.get(split, {}):
                have = sorted(res.get(split, {})) if split in res else sorted(s for s in res if s.startswith("test"))
                raise ConfigError(f"card {card.id!r}: run {r['run_id']} has no {metric!r} on split {split!r}; "
                                  f"it has: {', '.join(have)}")
            values[int(r["seed"])] = float(res[split][metric])
        info = {"lr": entry.lr, "lrs": sorted({r["lr"] for r in rows if r["task"] == task and r["model"] == model}),
                "val": entry.val, "n_params": entry.n_params, "budget": budgets.get(task),
                "steps": steps.get((task, model)), "metric": metric, "split": split, "task": task,
                "seeds_planned": len(chosen), "diverged": sum(r["status"] == "diverged" for r in chosen),
                "failed": sum(r["status"] == "failed" for r in chosen),
                "run_ids": [r["run_id"] for r in chosen]}
        data[(task, model)] = Sample(values, hib, info)
    return data, run_ids, name, {"suite": name, "split": split}


def _measure_samples(card: Card) -> dict[Key, Sample]:
    assert card.measure is not None
    m = get_measure(card.measure.name)
    metric = card.metric.name or m.metric
    hib = card.metric.higher_is_better if card.metric.higher_is_better is not None else m.higher_is_better
    per_seed = {s: m(s, **card.measure.options) for s in card.measure.seeds}
    for s, out in per_seed.items():
        if metric not in out:
            raise ConfigError(f"card {card.id!r}: measurement {m.name!r} gives {', '.join(sorted(out))}, "
                              f"not {metric!r}")
    others = sorted({k for out in per_seed.values() for k in out} - {metric})
    info = {"measure": m.name, "options": dict(card.measure.options), "metric": metric,
            **{f"mean {k}": sum(out[k] for out in per_seed.values()) / len(per_seed) for k in others}}
    return {(None, None): Sample({s: out[metric] for s, out in per_seed.items()}, hib, info)}


def check_card(card: Card, store: Store, *, executor: Executor | None = None, device: str = "cpu",
               console: Console | None = None, show_board: bool = False) -> CheckResult:
    """Run one card's setting, decide its rule, record and return the verdict."""
    console = console or Console()
    t0 = time.time()
    console.print(f"[b]card {escape(card.id)}[/b] ({escape(card.paper)}): {escape(card.claim)}", highlight=False)
    if card.measure is not None:
        data, run_ids, suite_name = _measure_samples(card), [], None
    else:
        data, run_ids, suite_name, _ = _suite_samples(card, store, executor=executor or LocalExecutor(1),
                                                      device=device, console=console, show_board=show_board)
    outcome = evaluate(card.rule, data)
    seconds = time.time() - t0
    details = dict(outcome.details)
    details["metric"] = card.metric.name or next(iter(data.values())).info.get("metric")
    details["split"] = card.metric.split if card.measure is None else None  # a measurement has no split
    record = {"card_id": card.id, "card_hash": card.hash, "paper": card.paper, "claim": card.claim,
              "kind": card.kind, "rule": card.to_dict()["rule"], "verdict": outcome.verdict,
              "observed": outcome.observed, "lo": outcome.lo, "hi": outcome.hi, "details": details,
              "run_ids": run_ids, "suite": suite_name, "git_revision": git_revision(), "seconds": seconds}
    vid = store.add_verdict(record)
    return CheckResult(card, outcome, record, vid, seconds)


def check_cards(cards: list[Card], store: Store, *, executor: Executor | None = None, device: str = "cpu",
                console: Console | None = None, show_board: bool = False) -> list[CheckResult]:
    console = console or Console()
    for card in cards:  # every card's setting is valid before the first one trains
        if card.measure is None:
            plan(card)
    out = []
    for card in cards:
        out.append(check_card(card, store, executor=executor, device=device, console=console, show_board=show_board))
        console.print(verdict_table([out[-1].record]))
        console.print(model_table(out[-1].record))
    return out


# ---- display ------------------------------------------------------------------------------
COLOURS = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4g}"


def verdict_table(records: list[dict[str, Any]], title: str = "verdicts") -> Table:
    """One row per verdict: card, verdict, the rule's statistic with its 95% CI, the rule, time."""
    t = Table(title=title, title_justify="left")
    for col in ("card", "verdict", "observed", "95% CI", "rule", "hash", "s"):
        t.add_column(col, justify="right" if col in ("observed", "s") else "left",
                     no_wrap=col in ("verdict", "95% CI", "hash"))
    for r in records:
        v = r["verdict"]
        ci = "—" if r.get("lo") is None and r.get("hi") is None else f"[{fmt(r.get('lo'))}, {fmt(r.get('hi'))}]"
        t.add_row(escape(r["card_id"]), f"[{COLOURS.get(v, 'white')}]{escape(v)}[/]", fmt(r.get("observed")),
                  escape(ci), escape(r["details"].get("rule", "")), escape(r["card_hash"][:8]),
                  fmt(r.get("seconds")))
    return t


def _models(details: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, numbers) of every model a verdict read, once per (task, model)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for label, m in details.get("models", {}).items():
        found.setdefault((str(m.get("task")), label), m)
    for p in details.get("parts", []):
        for key, m in _models(p):
            found.setdefault((str(m.get("task")), key), m)
    return [(label, m) for (_, label), m in found.items()]


def model_table(record: dict[str, Any]) -> Table:
    """The per-model numbers behind one verdict: mean and 95% CI over seeds, lr, seeds."""
    d = record["details"]
    where = f" on {d['split']}" if d.get("split") else " (measured)"
    t = Table(title=escape(f"{record['card_id']}: {d.get('metric')}{where}"), title_justify="left")
    for col in ("model", "task", "mean", "95% CI", "per seed", "lr", "params", "notes"):
        t.add_column(col, justify="right" if col in ("mean", "lr", "params") else "left")
    for label, m in _models(d):
        notes = [f"{m[k]} {k}" for k in ("diverged", "failed") if m.get(k)]
        t.add_row(escape(label), escape(str(m.get("task") or "")), fmt(m.get("mean")),
                  escape(f"[{fmt(m.get('lo'))}, {fmt(m.get('hi'))}]"),
                  escape(" ".join(fmt(v) for v in m.get("values", {}).values())),
                  f"{m['lr']:g}" if m.get("lr") is not None else "—",
                  f"{m['n_params']:,}" if m.get("n_params") else "—", escape(", ".join(notes)))
    return t


__all__ = ["CheckResult", "check_card", "check_cards", "plan", "restrict", "store_suite_name", "verdict_table",
           "model_table", "describe"]
