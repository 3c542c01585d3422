"""The report's catalogue section: coverage of the seed papers by kind, then every paper with
its status, the systems that implement it, its claim cards and its latest verdicts."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .html import anchor, badge, esc, table

STATUSES = ("checked", "implemented", "partial", "missing")
KINDS = ("block", "training", "theory", "instrument", "efficiency")


def coverage(papers: Sequence[Any]) -> dict[str, Counter]:
    """kind -> Counter of statuses (and "total"), kinds in the catalogue's order, then any others."""
    by_kind: dict[str, Counter] = {}
    for p in papers:
        c = by_kind.setdefault(p.kind, Counter())
        c[p.status] += 1
        c["total"] += 1
    order = [k for k in KINDS if k in by_kind] + sorted(k for k in by_kind if k not in KINDS)
    return {k: by_kind[k] for k in order}


def _bar(c: Counter) -> str:
    total = c["total"] or 1
    parts = "".join(f'<i class="s-{s}" style="width:{100 * c[s] / total:.2f}%" title="{c[s]} {s}"></i>'
                    for s in STATUSES if c[s])
    return f'<div class="bar">{parts}</div>'


def coverage_table(papers: Sequence[Any]) -> str:
    cov = coverage(papers)
    rows = []
    totals: Counter = Counter()
    for kind, c in cov.items():
        totals.update(c)
        covered = c["total"] - c["missing"]
        rows.append([esc(kind), f"{c['total']}", *(f"{c[s]}" for s in STATUSES),
                     f"{100 * covered / c['total']:.0f}%", _bar(c)])
    covered = totals["total"] - totals["missing"]
    rows.append(["<b>all</b>", f"<b>{totals['total']}</b>", *(f"<b>{totals[s]}</b>" for s in STATUSES),
                 f"<b>{100 * covered / max(totals['total'], 1):.0f}%</b>", _bar(totals)])
    legend = "".join(f'<span><i class="s-{s}"></i>{s}</span>' for s in STATUSES)
    return (table(["kind", "papers", *STATUSES, "covered", "share"], rows,
                  numeric=[False, True, True, True, True, True, True, False], cls="coverage")
            + f'<div class="legend">{legend}</div>')


def _systems(p: Any) -> str:
    if not p.systems:
        return '<span class="muted">—</span>'
    # dotted paths break after their dots rather than widening the table
    return "<br>".join(f'<code class="sys" title="{esc(s.file)}">{esc(s.kind)}:{esc(s.name).replace(".", ".<wbr>")}</code>'
                       for s in p.systems)


def _cards(p: Any, verdict_ids: set[str]) -> str:
    if not p.cards:
        return '<span class="muted">—</span>'
    out = []
    for cid in p.cards:
        out.append(f'<a href="#v-{anchor(cid)}">{esc(cid)}</a>' if cid in verdict_ids else esc(cid))
    return "<br>".join(out)


def paper_list(papers: Sequence[Any], verdict_ids: set[str]) -> str:
    kinds = list(coverage(papers))
    opts_kind = "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in kinds)
    opts_status = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    filters = (f'<div class="filters"><input id="paper-q" type="search" placeholder="search title, arXiv id, system…" '
               f'aria-label="search papers"><select id="paper-kind" aria-label="kind"><option value="">all kinds</option>'
               f'{opts_kind}</select><select id="paper-status" aria-label="status"><option value="">any status</option>'
               f'{opts_status}</select><span id="paper-count" class="muted">{len(papers)} papers</span></div>')
    order = {s: i for i, s in enumerate(STATUSES)}
    ordered = sorted(papers, key=lambda p: (kinds.index(p.kind), order.get(p.status, 9), p.title.lower()))
    rows, attrs = [], []
    for p in ordered:
        note = p.partial or p.note
        meta = " · ".join((esc(p.year), f"arXiv <code>{esc(p.arxiv)}</code>" if p.arxiv else "no arXiv id",
                           *(() if p.seed else ("not in the seed list",))))
        rows.append([badge(p.status, p.status),
                     f'<span class="title" id="p-{anchor(p.slug)}">{esc(p.title)}</span><span class="meta">{meta}</span>',
                     esc(p.kind), _systems(p), _cards(p, verdict_ids),
                     f'<span class="note">{"<b>partial:</b> " if p.partial else ""}{esc(note)}</span>' if note else ""])
        text = " ".join([p.slug, p.title, p.arxiv, str(p.year), *(s.name for s in p.systems), *p.cards, note or ""])
        attrs.append(f'data-kind="{esc(p.kind)}" data-status="{esc(p.status)}" data-text="{esc(text.lower())}"')
    return filters + table(["status", "paper", "kind", "systems", "cards", "note"], rows, cls="papers wide",
                           table_id="paper-list", row_attrs=attrs)


def catalogue_section(papers: Sequence[Any]) -> str:
    """Coverage of the catalogue by kind (the full list is `papers_section`, at the page's end)."""
    head = '<section id="catalogue"><h2>Paper catalogue</h2>'
    if not papers:
        return head + '<p class="empty-note">The paper catalogue is empty.</p></section>'
    extra = sum(not p.seed for p in papers)
    also = f" ({len(papers) - extra} from the seed list, {extra} more that registered blocks cite)" if extra else ""
    return (head + f'<p class="lede">{len(papers)} papers{also} that layerlab draws its blocks, training methods, '
            'instruments and theory from. <b>checked</b>: a claim card has a verdict in this store; '
            '<b>implemented</b>: code implements the paper; <b>partial</b>: implemented in part; '
            '<b>missing</b>: not implemented, with the reason. <a href="#papers">Every paper</a> is listed at the end.</p>'
            '<h3 id="coverage">Coverage by kind</h3>' + coverage_table(papers) + '</section>')


def papers_section(papers: Sequence[Any], verdict_ids: set[str]) -> str:
    """Every paper of the catalogue, filterable by text, kind and status."""
    if not papers:
        return ""
    return ('<section id="papers"><h2>All papers</h2><p class="lede">Each paper with the systems that implement it '
            '(hover for the file), its claim cards (linked where checked) and, where nothing implements it, why.</p>'
            + paper_list(papers, verdict_ids) + '</section>')
