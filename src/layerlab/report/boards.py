"""The report's leaderboard section: every suite in the store, through the arena's own `board`
(learning rate chosen on validation, test mean ± 95% CI over seeds, the baseline comparison)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..arena.leaderboard import SHORT, Entry, board
from ..arena.store import Store
from ..arena.suite import builtin_suites, load_suite
from .html import anchor, badge, esc, num, table

PERCENT_METRICS = ("accuracy", "exact_match")


def suite_baseline(name: str) -> str | None:
    """The baseline model a built-in suite names (a suite run from a file has none here)."""
    return load_suite(name).baseline if name in builtin_suites() else None


def _val(v: float, pct: bool) -> str:
    if math.isnan(v):
        return "—"
    return f"{100 * v:.1f}" if pct else num(v)


def ci_strip(mean: float, half: float, lo: float, hi: float, chance: float | None = None,
             width: int = 120, height: int = 16) -> str:
    """A small inline SVG: the 95% interval as a bar and the mean as a dot, on the scale [lo, hi]
    that the rows of one table share, with the chance level as a dashed tick where it falls inside."""
    if math.isnan(mean) or not (hi > lo):
        return ""
    pad = 6

    def X(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (width - 2 * pad)

    parts = [f'<svg class="ci" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">']
    if chance is not None and lo <= chance <= hi:
        parts.append(f'<line class="zero" x1="{X(chance):.1f}" x2="{X(chance):.1f}" y1="1" y2="{height - 1}"/>')
    if not math.isnan(half):
        parts.append(f'<line x1="{X(mean - half):.1f}" x2="{X(mean + half):.1f}" y1="{height / 2}" y2="{height / 2}"/>')
    parts.append(f'<circle cx="{X(mean):.1f}" cy="{height / 2}" r="3.2"/></svg>')
    return "".join(parts)


def task_table(suite: str, task: str, entries: Sequence[Entry]) -> str:
    """One task's leaderboard as an HTML table, best first (the order `board` gives)."""
    e0 = entries[0]
    pct = e0.metric in PERCENT_METRICS
    unit = " %" if pct else ""
    short = SHORT.get(e0.metric, e0.metric)
    arrow = "↑" if e0.higher_is_better else "↓"
    extra_splits = sorted({s for e in entries for s in e.extra})
    show_mem = any(e.memory_mb for e in entries)
    show_state = any(e.state_size for e in entries)
    base = next((e.model for e in entries if e.versus == "base"), None)
    bounds = [v for e in entries if not math.isnan(e.test[0])
              for v in ((e.test[0], e.test[0]) if math.isnan(e.test[1]) else (e.test[0] - e.test[1], e.test[0] + e.test[1]))]
    lo, hi = (min(bounds), max(bounds)) if bounds else (math.nan, math.nan)
    pad = 0.05 * (hi - lo) if bounds and hi > lo else 0.5 * (abs(lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    header = ["#", "model", f"test {esc(short)}{unit}", "95% CI", *(esc(s.replace("test", short)) for s in extra_splits),
              f"val {esc(short)}", "lr", "seeds", "params", "ms/step"]
    numeric = [True, False, True, False, *([True] * len(extra_splits)), True, True, True, True, True]
    if show_mem:
        header.append("mem MB")
        numeric.append(True)
    if show_state:
        header.append("state")
        numeric.append(True)
    if base:
        header.append(f"vs {esc(base)}")
        numeric.append(False)
    show_notes = any(e.diverged or e.failed or e.pending for e in entries)
    if show_notes:
        header.append("notes")
        numeric.append(False)
    rows = []
    for i, e in enumerate(entries, 1):
        mean, half = e.test
        test = _val(mean, pct) + ("" if math.isnan(half) else f' <span class="muted">± {_val(half, pct)}</span>')
        notes = ", ".join(f"{n} {what}" for n, what in ((e.diverged, "diverged"), (e.failed, "failed"),
                                                         (e.pending, "unfinished")) if n)
        cells = [str(i), f"<b>{esc(e.model)}</b>", test, ci_strip(mean, half, lo, hi, e.chance)]
        cells += [_val(e.extra.get(s, (math.nan, math.nan))[0], pct) for s in extra_splits]
        cells += [_val(e.val, pct), f"{e.lr:g}", f"{e.seeds}/{e.seeds_planned}",
                  f"{e.n_params:,}" if e.n_params else "—", f"{e.ms_per_step:.1f}" if e.ms_per_step else "—"]
        if show_mem:
            cells.append(f"{e.memory_mb:.1f}" if e.memory_mb else "—")
        if show_state:
            cells.append(f"{e.state_size:,.0f}" if e.state_size else "—")
        if base:
            cells.append(badge(e.versus, e.versus) if e.versus in ("better", "worse", "base")
                         else esc(e.versus or ""))
        if show_notes:
            cells.append(f'<span class="muted">{esc(notes)}</span>')
        rows.append(cells)
    chance = "" if e0.chance is None else f"; chance {_val(e0.chance, pct)}{unit}"
    caption = (f"{esc(task)} <small>test {esc(e0.metric)}{unit} {arrow}, mean ± 95% CI over seeds at the "
               f"learning rate chosen on validation{esc(chance)}</small>")
    return (f'<div id="{anchor("board", suite, task)}">'
            + table(header, rows, numeric=numeric, cls="board", caption=caption) + "</div>")


def boards_section(store: Store) -> tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]:
    """The section's HTML and its table-of-contents entries: (suite, anchor, [(task, anchor)])."""
    suites = store.suites()
    head = '<section id="leaderboards"><h2>Leaderboards</h2>'
    if not suites:
        return head + '<p class="empty-note">No suite runs in this store: <code>layerlab run quick</code> makes some.</p></section>', []
    toc: list[tuple[str, str, list[tuple[str, str]]]] = []
    parts = [head, '<p class="lede">For every suite in the store: per task, the learning rate with the best '
                  'mean validation metric is selected, and its test split is reported over seeds (mean and 95% '
                  'confidence interval, Student t). The bar shows the interval on a scale shared by the table, '
                  'the dashed tick the chance level where it falls in that range. Where the suite names a baseline, <b>better</b>/<b>worse</b> '
                  'means separated intervals and ≈ overlapping ones.</p>']
    plain = [s for s in suites if "@" not in s]
    of_cards = [s for s in suites if "@" in s]  # suites a claim card filed its runs under: <card>@<hash>
    for s in plain + of_cards:
        if s == (of_cards[0] if of_cards else None):
            parts.append('<h3 id="card-suites">Suites of claim cards</h3><p class="lede">Each claim card that '
                         'trains files its runs under its own suite, <code>card@runs-hash</code>.</p>')
        baseline = suite_baseline(s)
        boards = board(store, s, baseline)
        n_runs = len(store.suite_rows(s))
        sid = anchor("suite", s)
        level = "h3" if "@" not in s else "h4"
        parts.append(f'<{level} id="{sid}" class="suite">suite {esc(s)} <small class="muted">· {n_runs} runs'
                     f'{f" · baseline {esc(baseline)}" if baseline else ""}</small></{level}>')
        for task, entries in boards.items():
            parts.append(task_table(s, task, entries))
        toc.append((s, sid, [(t, anchor("board", s, t)) for t in boards] if "@" not in s else []))
    parts.append("</section>")
    return "".join(parts), toc
