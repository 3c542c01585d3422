"""The report's compression section: for every run with derived runs (`layerlab compress`), the
quality-vs-saving curve of each technique and a table of its levels, read from the store only.

A chart puts the test metric against the measured saving natural to the technique's level: the
fraction of nonzero parameters kept (pruning, sparsity, low rank) or of the weights' bits
(quantization), each measured on the compressed model against the dense parent. The tables add
the wall-time and memory ratios, measured in the same call as the dense model's.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..arena.plots import compression_curves
from ..arena.store import Store
from ..tasks import build_task
from .html import anchor, esc, num, short_id, table
from .svg import PALETTE, Line, line_chart

AXES = {"nonzero_ratio": "nonzero parameters / dense parent", "bits_ratio": "bits of the weights / dense parent"}
_X_OF_KIND = {"sparsity": "nonzero_ratio", "rank": "nonzero_ratio", "bits": "bits_ratio"}


def _ratio(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}×"


def _technique_table(technique: str, points: Sequence[dict], metric: str, base: float | None, kind: str) -> str:
    header = ["level", "seeds", f"val {esc(metric)}", f"test {esc(metric)}", "Δ test vs dense", "nonzero", "bits",
              "time", "memory"]
    rows = []
    for p in points:
        test = p.get("test", math.nan)
        delta = "—" if base is None or math.isnan(test) else f"{test - base:+.4g}"
        rows.append([num(p["level"]), str(p["seeds"]), num(p.get("val", math.nan), 4), num(test, 4), esc(delta),
                     _ratio(p["nonzero_ratio"]), _ratio(p["bits_ratio"]), _ratio(p["time_ratio"]),
                     _ratio(p["memory_ratio"])])
    caption = (f"{esc(technique)} <small>level: {esc(kind)}; savings as ratios against the dense parent, "
               f"measured (mean over seeds where several)</small>")
    return table(header, rows, numeric=[True] * len(header), cls="board", caption=caption)


def compression_section(store: Store) -> tuple[str, list[tuple[str, str]]]:
    """The section's HTML and its table-of-contents entries (one per parent run)."""
    derived = store.derived_runs()
    head = '<section id="compression"><h2>Compression</h2>'
    if not derived:
        return (head + '<p class="empty-note">No derived runs in this store: <code>layerlab compress RUN_ID '
                '--technique NAME --levels 0.5,0.9</code> makes some.</p></section>'), []
    parts = [head, '<p class="lede">Techniques applied to a finished run\'s checkpoint by <code>layerlab compress'
                   '</code>: each level is a derived run, evaluated on the run\'s task. Savings are measured on the '
                   'compressed model (nonzero parameters, bits of the stored weights, inference wall time and '
                   'memory), each as a ratio against the dense parent measured in the same call.</p>']
    toc = []
    kinds = {(r["parent_id"], r["technique"]): r["level_kind"] for r in derived}
    for parent_id in sorted({r["parent_id"] for r in derived}):
        spec = store.spec(parent_id)
        metric = build_task(spec.task.name, **spec.task.params).metric
        base = store.results(parent_id).get("test", {}).get(metric)
        curves = compression_curves(store, parent_id)
        n_runs = sum(r["parent_id"] == parent_id for r in derived)
        sid = anchor("compress", parent_id)
        parts.append(f'<h3 id="{sid}">run {short_id(parent_id, 16)} <small class="muted">· {esc(spec.task.name)} · '
                     f'{esc(spec.model.label())} · {n_runs} derived runs · dense test {esc(metric)} '
                     f'{num(base, 4)}</small></h3>')
        charts = []
        for x_key, x_label in AXES.items():
            lines = []
            for i, (technique, points) in enumerate(curves.items()):
                if _X_OF_KIND.get(kinds.get((parent_id, technique)) or "sparsity") != x_key:
                    continue
                pts = [(1.0, base)] if base is not None else []
                pts += [(p[x_key], p.get("test", math.nan)) for p in points]
                lines.append(Line(technique, tuple(sorted(pts, reverse=True)), PALETTE[i % len(PALETTE)]))
            if lines:
                charts.append(line_chart(lines, title=f"test {metric} against measured saving (1 = the dense parent)",
                                         xlabel=x_label, ylabel=f"test {metric}"))
        parts.append('<div class="charts">' + "".join(charts) + "</div>")
        for technique, points in curves.items():
            parts.append(_technique_table(technique, points, metric, base, kinds.get((parent_id, technique)) or "?"))
        unfinished = [r for r in derived if r["parent_id"] == parent_id and r["status"] != "done"]
        if unfinished:
            parts.append(f'<p class="muted">{len(unfinished)} derived run(s) not finished ('
                         + esc(", ".join(f"{r['technique']} {r['level']:g}: {r['status']}" for r in unfinished))
                         + "); <code>layerlab compress</code> again finishes them.</p>")
        toc.append((f"run {parent_id[:10]}", sid))
    parts.append("</section>")
    return "".join(parts), toc
