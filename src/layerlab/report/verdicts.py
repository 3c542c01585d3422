"""The report's verdict section: a summary table (one row per claim card, its latest verdict),
then each verdict in full: the claim, the paper, the rule, the numbers and their interval, the
runs behind it with their revision, and those runs' learning curves (validation metric over
steps, one colour per model, one line per run)."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..arena.store import Store
from .html import anchor, badge, esc, num, short_id, table
from .svg import PALETTE, Line, line_chart

VERDICTS = ("supported", "contradicted", "inconclusive")
VERDICT_COLOUR = {"supported": "#1a7f37", "contradicted": "#b42318", "inconclusive": "#b07a00"}
# keys of a model's numbers shown in their own columns, or not at all (internal bookkeeping)
_MODEL_SHOWN = ("task", "mean", "lo", "hi", "values", "lr", "n_params", "steps", "budget", "diverged", "failed")
_MODEL_HIDDEN = ("n", "higher_is_better", "lrs", "metric", "split", "seeds_planned", "run_ids", "val")
# keys of the details shown elsewhere on the card
_DETAILS_SHOWN = ("rule", "verdict", "models", "parts", "observed", "lo", "hi")


def _paper_index(papers: Sequence[Any] | None) -> dict[str, Any]:
    idx: dict[str, Any] = {}
    for p in papers or ():
        idx[p.slug] = p
        if p.arxiv:
            idx[p.arxiv] = p
    return idx


def _paper_cell(ref: str, papers: Mapping[str, Any], short: bool = False) -> str:
    p = papers.get(ref)
    if p is None:
        return f"<code>{esc(ref)}</code>"
    if short:
        return f'<a href="#p-{anchor(p.slug)}" title="{esc(p.title)}">{esc(p.slug)}</a>'
    arxiv = f' <span class="muted">arXiv {esc(p.arxiv)}</span>' if p.arxiv else ""
    return f'<a href="#p-{anchor(p.slug)}">{esc(p.title)}</a> <span class="muted">({esc(p.year)})</span>{arxiv}'


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return esc(v)
    if isinstance(v, (int, float)):
        return num(v, 4)
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list)) for x in v):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, (list, tuple, dict)):
        return f"<code>{esc(json.dumps(v, default=str, sort_keys=True))}</code>"
    return esc(v)


def _interval(lo: Any, hi: Any, digits: int = 4) -> str:
    if lo is None and hi is None:
        return "—"
    return f"[{num(lo, digits)}, {num(hi, digits)}]"


def render_rule(rule: Any) -> str:
    """The decision rule as the card states it: its items as `key = value` (unset ones left out)."""
    if isinstance(rule, Mapping):
        return " ".join(f'<code class="kv">{esc(k)} = {esc(v if isinstance(v, str) else json.dumps(v, default=str))}</code>'
                        for k, v in rule.items() if v is not None) or '<span class="muted">—</span>'
    return esc(rule)


def interval_strip(observed: Any, lo: Any, hi: Any, bound: Any, verdict: str, width: int = 110, height: int = 18) -> str:
    """A small inline SVG: the rule's 95% interval (bar, coloured by verdict), its statistic (dot)
    and the bound the rule compares it with (dashed line), on a scale that holds all four."""
    xs = [x for x in (observed, lo, hi, bound) if isinstance(x, (int, float)) and math.isfinite(x)]
    if not isinstance(observed, (int, float)) or not math.isfinite(observed) or len(xs) < 2:
        return ""
    a, b = min(xs), max(xs)
    if b == a:
        a, b = a - 1, b + 1
    pad = 0.08 * (b - a)
    a, b = a - pad, b + pad

    def X(v: float) -> float:
        return (v - a) / (b - a) * width

    colour = VERDICT_COLOUR.get(verdict, "#5b6475")
    out = [f'<svg class="ci" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">']
    if all(isinstance(x, (int, float)) and math.isfinite(x) for x in (lo, hi)):
        out.append(f'<line x1="{X(lo):.1f}" x2="{X(hi):.1f}" y1="{height / 2}" y2="{height / 2}" '
                   f'style="stroke:{colour};stroke-width:3"/>')
    if isinstance(bound, (int, float)) and math.isfinite(bound):
        out.append(f'<line class="zero" x1="{X(bound):.1f}" x2="{X(bound):.1f}" y1="0" y2="{height}"/>')
    out.append(f'<circle cx="{X(observed):.1f}" cy="{height / 2}" r="3.6" style="fill:{colour}"/></svg>')
    return "".join(out)


def models_table(models: Mapping[str, Any]) -> str:
    """The per-model numbers a rule read: test mean and 95% CI over seeds, each seed's value, the
    learning rate chosen on validation, parameters, steps and budget (a column that no model
    has, e.g. steps for a measurement, is left out)."""
    extra: list[str] = []
    for m in models.values():
        extra += [k for k in m if k not in _MODEL_SHOWN + _MODEL_HIDDEN and k not in extra]

    def seeds(m: Mapping[str, Any]) -> str:
        v = m.get("values") or {}
        return " ".join(_value(x) for x in v.values()) if isinstance(v, Mapping) else _value(v)

    def notes(m: Mapping[str, Any]) -> str:
        return f'<span class="warn">{esc(", ".join(f"{m[k]} {k}" for k in ("diverged", "failed") if m.get(k)))}</span>'

    # (header, numeric, cell, shown when some model has it)
    columns = [("task", False, lambda m: esc(m.get("task") or ""), "task"),
               ("mean", True, lambda m: _value(m.get("mean")), None),
               ("95% CI", True, lambda m: _interval(m.get("lo"), m.get("hi")), None),
               ("per seed", False, seeds, "values"),
               ("lr", True, lambda m: f"{m['lr']:g}" if isinstance(m.get("lr"), (int, float)) else "—", "lr"),
               ("params", True, lambda m: _value(m.get("n_params")) if m.get("n_params") else "—", "n_params"),
               ("steps", True, lambda m: _value(m.get("steps")) if m.get("steps") else "—", "steps"),
               ("budget", True, lambda m: _value(m.get("budget")) if m.get("budget") else "—", "budget"),
               *((esc(k), True, (lambda m, k=k: _value(m.get(k)) if k in m else "—"), k) for k in extra),
               ("", False, notes, None)]
    columns = [c for c in columns if c[3] is None or any(m.get(c[3]) not in (None, "", {}) for m in models.values())]
    rows = [[f"<b>{esc(label)}</b>", *(cell(m) for _, _, cell, _ in columns)] for label, m in models.items()]
    return table(["model", *(h for h, _, _, _ in columns)], rows, numeric=[False, *(n for _, n, _, _ in columns)],
                 cls="details")


def render_numbers(details: Mapping[str, Any]) -> str:
    """A verdict's details: the statistic and its setting as facts, then the per-model numbers;
    a combined rule (all/any) shows each part with its own verdict."""
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{_value(v)}</dd>" for k, v in details.items()
                    if k not in _DETAILS_SHOWN and v is not None)
    out = f'<dl class="inline">{facts}</dl>' if facts else ""
    if isinstance(details.get("models"), Mapping) and details["models"]:
        out += models_table(details["models"])
    for i, part in enumerate(details.get("parts") or (), 1):
        if not isinstance(part, Mapping):
            continue
        verdict = str(part.get("verdict", "unknown"))
        out += (f'<div class="part"><p><b>part {i}</b> {badge(verdict, verdict)} <code>{esc(part.get("rule", ""))}</code> '
                f'&nbsp;observed <b>{num(part.get("observed"), 4)}</b>, 95% CI {_interval(part.get("lo"), part.get("hi"))}</p>'
                + render_numbers({k: v for k, v in part.items() if k not in ("verdict",)}) + "</div>")
    return out


def _selected_runs(details: Mapping[str, Any]) -> list[str]:
    """The runs at the learning rate chosen on validation, as the rule's models list them."""
    out: list[str] = []
    for m in (details.get("models") or {}).values():
        out += [r for r in (m.get("run_ids") or []) if r not in out] if isinstance(m, Mapping) else []
    for p in details.get("parts") or ():
        out += [r for r in _selected_runs(p) if r not in out] if isinstance(p, Mapping) else []
    return out


def run_curves(store: Store, run_ids: Sequence[str], suite: str | None, metric: str | None) -> tuple[str, list[str]]:
    """Validation curves of the runs, one chart per task; also the run ids not in this store."""
    labels: dict[str, dict[str, Any]] = {}
    if suite and suite in store.suites():
        labels = {r["run_id"]: r for r in store.suite_rows(suite)}
    by_task: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {}
    missing: list[str] = []
    metric_of_task: dict[str, str] = {}
    for rid in run_ids:
        try:
            row = store.run(rid)
        except KeyError:
            missing.append(rid)
            continue
        spec = json.loads(row["spec_json"])
        lab = labels.get(row["run_id"], {})
        task = lab.get("task") or spec["task"]["name"]
        model = lab.get("model") or "+".join(p for p in (spec["model"].get("mixer"), spec["model"].get("channel")) if p)
        val = store.metrics(row["run_id"], split="val")
        names = {m["name"] for m in val}
        if task not in metric_of_task:
            want = metric or lab.get("metric") or ""
            metric_of_task[task] = want if want in names else next(
                (n for n in ("accuracy", "loss") if n in names), min(names) if names else want)
        pts = [(float(m["step"]), math.nan if m["value"] is None else float(m["value"]))
               for m in val if m["name"] == metric_of_task[task]]
        by_task.setdefault(task, []).append((model, pts))
    models = list(dict.fromkeys(m for runs in by_task.values() for m, _ in runs))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    charts = []
    for task, runs in by_task.items():
        lines = [Line(group=m, points=tuple(p), colour=colour[m]) for m, p in runs if p]
        if not lines:
            charts.append(f'<p class="muted">{esc(task)}: no validation metrics recorded for these runs.</p>')
            continue
        charts.append(line_chart(lines, title=f"{task}: validation {metric_of_task[task]}", xlabel="step",
                                 ylabel=metric_of_task[task]))
    return f'<div class="charts">{"".join(charts)}</div>' if charts else "", missing


def summary_table(verdicts: Sequence[Mapping[str, Any]], papers: Mapping[str, Any]) -> str:
    """One row per card: its latest verdict, the rule's statistic and 95% interval against the bound."""
    rows = []
    for v in verdicts:
        d = v.get("details") if isinstance(v.get("details"), Mapping) else {}
        verdict = str(v.get("verdict", "unknown"))
        rows.append([f'<a href="#v-{anchor(v["card_id"])}">{esc(v["card_id"])}</a>',
                     _paper_cell(str(v.get("paper", "")), papers, short=True), badge(verdict, verdict), f'<span class="rule">{esc(d.get("rule", ""))}</span>',
                     num(v.get("observed"), 3), _interval(v.get("lo"), v.get("hi"), 3),
                     interval_strip(v.get("observed"), v.get("lo"), v.get("hi"), d.get("bound"), verdict),
                     str(len(v.get("run_ids") or ()))])
    return table(["card", "paper", "verdict", "rule", "observed", "95% CI", "vs bound", "runs"], rows,
                 numeric=[False, False, False, False, True, True, False, True], cls="verdicts",
                 table_id="verdict-table")


def verdict_article(store: Store, v: Mapping[str, Any], card: Any, papers: Mapping[str, Any]) -> str:
    cid = str(v["card_id"])
    verdict = str(v.get("verdict", "unknown"))
    details = v.get("details") if isinstance(v.get("details"), Mapping) else {}
    facts = [("paper", _paper_cell(str(v.get("paper", "")), papers)), ("kind of claim", esc(v.get("kind", "")))]
    if card is not None and getattr(card, "where", ""):
        facts.append(("where in the paper", esc(card.where)))
    if card is not None and getattr(card, "deviations", ""):
        facts.append(("deviations", esc(card.deviations)))
    if details.get("rule"):
        facts.append(("rule", f"<b>{esc(details['rule'])}</b>"))
    facts.append(("as the card states it", render_rule(v.get("rule"))))
    facts.append(("observed", f"<b>{num(v.get('observed'), 4)}</b> &nbsp;95% CI {_interval(v.get('lo'), v.get('hi'))} "
                  + interval_strip(v.get("observed"), v.get("lo"), v.get("hi"), details.get("bound"), verdict)))
    suite = v.get("suite")
    if suite:
        facts.append(("suite", f'<a href="#{anchor("suite", suite)}">{esc(suite)}</a>' if suite in store.suites() else esc(suite)))
    runs = list(v.get("run_ids") or [])
    facts.append(("runs", " ".join(short_id(r) for r in runs) if runs else '<span class="muted">none: no training</span>'))
    facts.append(("git revision", f"<code>{esc(v.get('git_revision', ''))}</code>"))
    seconds = v.get("seconds")
    facts.append(("checked", esc(str(v.get("created", ""))[:19].replace("T", " "))
                  + (f' <span class="muted">in {num(float(seconds), 3)} s</span>' if isinstance(seconds, (int, float)) else "")))
    card_hash = str(v.get("card_hash", ""))
    hash_note = f"<code>{esc(card_hash)}</code>"
    if card is not None and getattr(card, "hash", card_hash) != card_hash:
        hash_note += (f' <span class="warn">the card has changed since (now <code>{esc(card.hash)}</code>): this '
                      f'verdict is the old card\'s; <code>layerlab check {esc(cid)}</code> checks the new one</span>')
    facts.append(("card hash", hash_note))
    dl = "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in facts)
    metric = details.get("metric")
    curves, missing = run_curves(store, _selected_runs(details) or runs, suite, metric if isinstance(metric, str) else None)
    missing_note = f'<p class="muted">Not in this store: {" ".join(short_id(r) for r in missing)}</p>' if missing else ""
    numbers = render_numbers(details) if details else ""
    return (f'<article class="verdict v-{anchor(verdict)}" id="v-{anchor(cid)}">'
            f'<h3>{esc(cid)} {badge(verdict, verdict)}</h3>'
            f'<blockquote>{esc(v.get("claim", ""))}</blockquote>'
            f'<dl class="facts">{dl}</dl>'
            + (f"<h4>numbers</h4>{numbers}" if numbers else "")
            + (f"<h4>learning curves <small>(validation, at the chosen learning rate)</small></h4>{curves}" if curves else "")
            + missing_note + "</article>")


def verdict_counts(verdicts: Sequence[Mapping[str, Any]] | None) -> dict[str, int]:
    return {k: sum(v.get("verdict") == k for v in verdicts or ()) for k in VERDICTS}


def verdicts_section(store: Store, verdicts: Sequence[Mapping[str, Any]], cards: Sequence[Any] | None,
                     papers: Sequence[Any] | None) -> str:
    """`verdicts`: the latest verdict per card; `cards`: every card (to list those not yet checked)."""
    head = '<section id="verdicts"><h2>Verdicts</h2>'
    by_paper = _paper_index(papers)
    card_by_id = {c.id: c for c in cards or ()}
    if not verdicts:
        body = ('<p class="empty-note">No verdicts in this store. <code>layerlab check --all</code> checks every '
                'claim card and records its verdict here.</p>')
    else:
        counts = verdict_counts(verdicts)
        body = (f'<p class="lede">The latest verdict of each claim card: {len(verdicts)} card{"s" if len(verdicts) != 1 else ""}: '
                + ", ".join(f'{n} {badge(k, k)}' for k, n in counts.items())
                + '. Each card fixed its rule before its runs; a contradicted claim is a result, not a failure. '
                'The bar shows the rule\'s 95% interval, the dot its statistic, the dashed line the bound.</p>'
                + summary_table(verdicts, by_paper)
                + "".join(verdict_article(store, v, card_by_id.get(v["card_id"]), by_paper) for v in verdicts))
    checked = {v["card_id"] for v in verdicts}
    unchecked = [c for c in cards or () if c.id not in checked]
    if unchecked:
        rows = [[esc(c.id), _paper_cell(str(c.paper), by_paper, short=True), esc(c.kind), f'<span class="muted">{esc(c.claim)}</span>']
                for c in unchecked]
        body += ('<h3 id="unchecked">Cards without a verdict in this store</h3>'
                 + table(["card", "paper", "kind", "claim"], rows, cls="unchecked"))
    return head + body + "</section>"
