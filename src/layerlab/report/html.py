"""Small HTML builders. Every piece of text that reaches the page goes through `esc`; markup is
only ever assembled from escaped text and the fixed strings of this package."""
from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence

_ID_BAD = re.compile(r"[^a-z0-9_-]+")


def esc(value: object) -> str:
    """HTML-escape any value's text (quotes too, so the result is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def anchor(*parts: object) -> str:
    """A fragment id from arbitrary text: lowercase, [a-z0-9_-] only, never empty."""
    s = _ID_BAD.sub("-", "-".join(str(p) for p in parts).lower()).strip("-")
    return s or "x"


def num(value: float | int | None, digits: int = 3) -> str:
    """A number for a table cell: `digits` significant figures (thousands grouped, tiny values in
    e-notation), an em dash for missing or NaN."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 10 ** digits:
        return f"{value:,.0f}"
    if a < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[bool] | None = None,
          cls: str = "", table_id: str = "", caption: str = "", row_attrs: Sequence[str] | None = None) -> str:
    """A table from already-escaped cell markup. `numeric[i]` right-aligns column i (tabular
    figures); `row_attrs[j]` adds attributes (built from escaped values) to row j, for filtering."""
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    cap = f"<caption>{caption}</caption>" if caption else ""
    head = "".join(f'<th scope="col"{" class=num" if n else ""}>{h}</th>' for h, n in zip(header, numeric))
    body = []
    for j, row in enumerate(rows):
        attrs = f" {row_attrs[j]}" if row_attrs is not None and row_attrs[j] else ""
        cells = "".join(f'<td{" class=num" if n else ""}>{c}</td>' for c, n in zip(row, numeric))
        body.append(f"<tr{attrs}>{cells}</tr>")
    tid = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table class="{esc(cls)}"{tid}>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def badge(text: str, kind: str) -> str:
    """A coloured label, e.g. a verdict or a status; `kind` picks the colour class."""
    return f'<span class="badge b-{anchor(kind)}">{esc(text)}</span>'


def short_id(run_id: str, n: int = 10) -> str:
    """A run id shortened for a cell, the full id in its tooltip."""
    return f'<code title="{esc(run_id)}">{esc(run_id[:n])}</code>'
