"""The leaderboard: learning rate chosen on validation, test metric over seeds with a 95% CI.

For each (task, model) the learning rate with the best mean validation metric over seeds is
selected (a diverged or failed seed counts as chance level); the test split of the selected runs
is the only test number reported.

A suite with a methods dimension (``[[methods]]``) has one row per (model, methods) pair: its label
is ``"<model> · <methods>"`` (``layerlab.methods.METHOD_SEP``), shown as a model and a method
column, so methods are compared at the equal budget of their model.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

from .stats import mean_ci
from ..methods import METHOD_SEP
from .store import Store


@dataclass
class Entry:
    task: str
    model: str
    metric: str
    higher_is_better: bool
    chance: float | None
    lr: float
    seeds: int  # seeds finished at the selected lr
    seeds_planned: int
    test: tuple[float, float]  # mean, 95% CI half-width
    val: float
    extra: dict[str, tuple[float, float]] = field(default_factory=dict)  # other test splits
    n_params: int | None = None
    ms_per_step: float | None = None
    memory_mb: float | None = None  # training memory of one step
    state_size: float | None = None  # inference state per sequence, scalars
    versus: str | None = None  # against the baseline: "better", "worse", "≈" (CIs overlap), "base"
    diverged: int = 0
    failed: int = 0
    pending: int = 0


def _val_score(res: dict[str, dict[str, float]], metric: str, status: str, chance: float | None) -> float:
    if status == "done" and metric in res.get("val", {}):
        v = res["val"][metric]
        if math.isfinite(v):
            return v
    return chance if chance is not None else math.nan


def board(store: Store, suite: str, baseline: str | None = None) -> dict[str, list[Entry]]:
    """task label -> entries, best first; with a baseline model label, each entry says whether
    it beats the baseline with separated confidence intervals."""
    rows = store.suite_rows(suite)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["model"])].append(r)
    out: dict[str, list[Entry]] = defaultdict(list)
    for (task, model), runs in groups.items():
        metric, hib, chance = runs[0]["metric"], bool(runs[0]["higher_is_better"]), runs[0]["chance"]
        by_lr: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            r["res"] = store.results(r["run_id"])
            by_lr[r["lr"]].append(r)

        def lr_score(lr: float) -> float:
            finished = [r for r in by_lr[lr] if r["status"] in ("done", "diverged", "failed")]
            if not any(r["status"] == "done" for r in finished):
                return -math.inf
            vals = [_val_score(r["res"], metric, r["status"], chance) for r in finished]
            m = sum(vals) / len(vals)
            return m if hib else -m

        lr = max(sorted(by_lr), key=lr_score)
        chosen = by_lr[lr]
        done = [r for r in chosen if r["status"] == "done"]
        test = mean_ci([r["res"]["test"][metric] for r in done if metric in r["res"].get("test", {})])
        val = mean_ci([r["res"]["val"][metric] for r in done if metric in r["res"].get("val", {})])[0]
        extra_splits = sorted({s for r in done for s in r["res"] if s.startswith("test@")})
        extra = {s: mean_ci([r["res"][s][metric] for r in done if metric in r["res"].get(s, {})]) for s in extra_splits}
        times = [r["res"]["train"]["time_per_step_ms"] for r in done if "train" in r["res"]]
        train_res = [r["res"]["train"] for r in done if "train" in r["res"]]
        out[task].append(Entry(
            task=task, model=model, metric=metric, higher_is_better=hib, chance=chance, lr=lr,
            seeds=len(done), seeds_planned=len(chosen), test=test, val=val, extra=extra,
            n_params=next((r["n_params"] for r in runs if r["n_params"]), None),
            ms_per_step=sum(times) / len(times) if times else None,
            memory_mb=next((t["peak_memory_mb"] for t in train_res if "peak_memory_mb" in t), None),
            state_size=next((t["state_size"] for t in train_res if "state_size" in t), None),
            diverged=sum(r["status"] == "diverged" for r in runs),
            failed=sum(r["status"] == "failed" for r in runs),
            pending=sum(r["status"] not in ("done", "diverged", "failed") for r in runs),
        ))
    for task, entries in out.items():
        entries.sort(key=lambda e: (math.isnan(e.test[0]), -e.test[0] if e.higher_is_better else e.test[0]))
        if baseline is not None:
            compare_to_baseline(entries, baseline)
    return dict(sorted(out.items()))


def compare_to_baseline(entries: list[Entry], baseline: str) -> None:
    """Mark each entry "better"/"worse" than the baseline model where the 95% confidence
    intervals of their test means are separated, and "≈" where they overlap."""
    base = next((e for e in entries if e.model == baseline), None)
    if base is None or math.isnan(base.test[0]):
        return
    b_lo, b_hi = base.test[0] - base.test[1], base.test[0] + base.test[1]
    for e in entries:
        if e is base:
            e.versus = "base"
            continue
        if math.isnan(e.test[0]) or math.isnan(e.test[1]) or math.isnan(base.test[1]):
            continue
        lo, hi = e.test[0] - e.test[1], e.test[0] + e.test[1]
        above, below = lo > b_hi, hi < b_lo
        if not (above or below):
            e.versus = "≈"
        else:
            e.versus = "better" if above == e.higher_is_better else "worse"


SHORT = {"accuracy": "acc", "exact_match": "exact", "bpc": "bpc", "loss": "loss"}


def _fmt(value: float, pct: bool) -> str:
    if math.isnan(value):
        return "—"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def render(boards: dict[str, list[Entry]], suite: str) -> list[Table]:
    """One table a task: best first; accuracies in percent; ± is the 95% CI half-width over seeds."""
    tables = []
    for task, entries in boards.items():
        e0 = entries[0]
        pct = e0.metric in ("accuracy", "exact_match")
        unit = " %" if pct else ""
        arrow = "↑" if e0.higher_is_better else "↓"
        chance = "" if e0.chance is None else f"; chance {_fmt(e0.chance, pct)}{unit}"
        extra_splits = sorted({s for e in entries for s in e.extra})
        t = Table(title=f"[b]{escape(suite)} · {escape(task)}[/b]: {escape(f'test {e0.metric}{unit} {arrow}')}, "
                        f"mean ± 95% CI over seeds{chance}",
                  title_justify="left")
        short = SHORT.get(e0.metric, e0.metric)
        t.add_column("#", justify="right")
        t.add_column("model", no_wrap=True)
        show_method = any(METHOD_SEP in e.model for e in entries)
        if show_method:
            t.add_column("method", no_wrap=True)
        t.add_column(f"test {short}", justify="right", no_wrap=True)
        t.add_column("±", justify="right", no_wrap=True)
        for split in extra_splits:
            t.add_column(split.replace("test", short), justify="right", no_wrap=True)
        t.add_column(f"val {short}", justify="right", no_wrap=True)
        t.add_column("lr", justify="right", no_wrap=True)
        t.add_column("seeds", justify="right", no_wrap=True)
        t.add_column("params", justify="right", no_wrap=True)
        t.add_column("ms/step", justify="right", no_wrap=True)
        show_mem = any(e.memory_mb for e in entries)
        show_state = any(e.state_size for e in entries)
        show_vs = next((e.model for e in entries if e.versus == "base"), None)
        if show_mem:
            t.add_column("mem MB", justify="right", no_wrap=True)
        if show_state:
            t.add_column("state", justify="right", no_wrap=True)
        if show_vs:
            t.add_column(escape(f"vs {show_vs}"), no_wrap=True)
        t.add_column("notes")
        for i, e in enumerate(entries, 1):
            notes = [f"{n} {what}" for n, what in ((e.diverged, "diverged"), (e.failed, "failed"),
                                                    (e.pending, "unfinished")) if n]
            model, _, method = e.model.partition(METHOD_SEP)
            cells = [str(i), *((escape(model), escape(method) or "—") if show_method else (escape(e.model),)),
                     _fmt(e.test[0], pct), _fmt(e.test[1], pct)]
            cells += [_fmt(e.extra.get(s, (math.nan, math.nan))[0], pct) for s in extra_splits]
            cells += [_fmt(e.val, pct), f"{e.lr:g}", f"{e.seeds}/{e.seeds_planned}",
                      f"{e.n_params:,}" if e.n_params else "—",
                      f"{e.ms_per_step:.1f}" if e.ms_per_step else "—"]
            if show_mem:
                cells.append(f"{e.memory_mb:.1f}" if e.memory_mb else "—")
            if show_state:
                cells.append(f"{e.state_size:,.0f}" if e.state_size else "—")
            if show_vs:
                cells.append("" if e.versus in (None, "base") else escape(e.versus))
            cells.append(", ".join(notes))
            t.add_row(*cells)
        tables.append(t)
    return tables
