"""`layerlab report`: one self-contained HTML page of what a store holds.

The page has a header (store, code revision, date), a table of contents, and four sections:
the paper catalogue's coverage by kind, the verdicts of the claim cards with their learning
curves, the leaderboards of every suite in the store, the quality-vs-saving curves of compressed runs
(only where the store has derived runs), and the catalogue's full list of papers
(filterable by a small inline script; the page reads fully without it). Its stylesheet, figures (inline
SVG) and its one small script are inside the file; nothing is fetched from anywhere, so the file
can be mailed, archived or opened offline. All text from the store, the cards and the catalogue
is HTML-escaped.
"""
from __future__ import annotations

import datetime as _dt
from collections import Counter
from pathlib import Path
from typing import Any

from ..arena.provenance import git_revision
from ..arena.store import Store
from .boards import boards_section
from .catalogue import catalogue_section, coverage, papers_section
from .compression import compression_section
from .html import anchor, badge, esc
from .style import CSS, SCRIPT
from .verdicts import VERDICTS, verdict_counts, verdicts_section

REPORT_NAME = "report.html"


def gather(store: Store) -> dict[str, Any]:
    """What the page shows, read from the store, the catalogue and the claim cards."""
    from ..claims.card import load_cards
    from ..claims.catalogue import load_catalogue

    return {"papers": load_catalogue(store), "verdicts": store.verdicts(), "cards": load_cards()}


def _tiles(store: Store, data: dict[str, Any]) -> str:
    """The page at a glance: coverage, verdicts by outcome, suites, finished runs."""
    tiles = []
    papers = data["papers"]
    if papers:
        covered = sum(p.status != "missing" for p in papers)
        tiles.append((f"{covered} of {len(papers)}", "papers with code or a verdict"))
    counts = verdict_counts(data["verdicts"])
    tiles.append((" · ".join(f'<span class="n-{k}">{counts[k]}</span>' for k in VERDICTS),
                  " · ".join(VERDICTS)))
    status = Counter(r["status"] for r in store.runs())
    tiles.append((f"{len(store.suites())}", "suites"))
    tiles.append((f"{status['done']} of {sum(status.values())}", "runs finished"))
    return '<div class="tiles">' + "".join(f"<div class=tile><b>{a}</b><span>{esc(b)}</span></div>"
                                           for a, b in tiles) + "</div>"


def _toc(data: dict[str, Any], board_toc: list[tuple[str, str, list[tuple[str, str]]]],
         compress_toc: list[tuple[str, str]] = ()) -> str:
    def items(pairs: list[tuple[str, str]]) -> str:
        return "<ol>" + "".join(f'<li><a href="#{a}">{t}</a></li>' for t, a in pairs) + "</ol>" if pairs else ""

    cat = items([("Coverage by kind", "coverage")]) if data["papers"] else ""
    verdicts = data["verdicts"]
    v_items = [(f'{badge("●", v.get("verdict", "unknown"))} {esc(v["card_id"])}', f'v-{anchor(v["card_id"])}')
               for v in verdicts]
    checked = {v["card_id"] for v in verdicts}
    if any(c.id not in checked for c in data["cards"] or ()):
        v_items.append(("Cards without a verdict", "unchecked"))
    boards = "<ol>" + "".join(f'<li><a href="#{sid}">{esc(s)}</a>{items([(esc(t), a) for t, a in tasks])}</li>'
                              for s, sid, tasks in board_toc) + "</ol>" if board_toc else ""
    return ('<nav class="toc" aria-label="contents"><h2>Contents</h2><ol>'
            f'<li><a href="#catalogue"><b>Paper catalogue</b></a>{cat}</li>'
            f'<li><a href="#verdicts"><b>Verdicts</b></a>{items(v_items)}</li>'
            f'<li><a href="#leaderboards"><b>Leaderboards</b></a>{boards}</li>'
            + (f'<li><a href="#compression"><b>Compression</b></a>{items([(esc(t), a) for t, a in compress_toc])}</li>'
               if compress_toc else "")
            + ('<li><a href="#papers"><b>All papers</b></a></li>' if data["papers"] else "") + "</ol></nav>")


def build_report(store: Store, *, now: _dt.datetime | None = None) -> str:
    """The whole page as one string."""
    data = gather(store)
    now = now or _dt.datetime.now().astimezone()
    verdict_ids = {v["card_id"] for v in data["verdicts"]}
    boards_html, board_toc = boards_section(store)
    compress_html, compress_toc = compression_section(store)
    kinds = coverage(data["papers"]) if data["papers"] else {}
    subtitle = f"{len(data['papers'])} papers in {len(kinds)} kinds" if data["papers"] else ""
    header = (f'<header class="top"><h1>layerlab report <span>{esc(subtitle)}</span></h1><dl>'
              f'<div><dt>store</dt><dd><code>{esc(store.root.resolve())}</code></dd></div>'
              f'<div><dt>code revision</dt><dd><code>{esc(git_revision())}</code></dd></div>'
              f'<div><dt>written</dt><dd>{esc(now.strftime("%Y-%m-%d %H:%M %Z").strip())}</dd></div></dl></header>')
    main = ("<main>" + _tiles(store, data)
            + catalogue_section(data["papers"])
            + verdicts_section(store, data["verdicts"], data["cards"], data["papers"])
            + boards_html
            + (compress_html if compress_toc else "")
            + papers_section(data["papers"], verdict_ids)
            + f'<footer>Written by <code>layerlab report</code> from {esc(store.path.resolve())}. '
              'Self-contained: open it offline, mail it, archive it.</footer></main>')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>layerlab report · {esc(store.root.name)}</title><style>{CSS}</style></head><body>'
            f'{header}<div class="layout">{_toc(data, board_toc, compress_toc)}{main}</div>'
            f'<script>{SCRIPT}</script></body></html>\n')


def write_report(store: Store, output: str | Path | None = None) -> Path:
    """Write the page to `output` (default: report.html inside the store) and return its path."""
    out = Path(output) if output is not None else store.root / REPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(build_report(store), encoding="utf-8")
    tmp.replace(out)
    return out
