"""Learning curves as inline SVG: no image files, no fonts or scripts from anywhere, text that
the page's CSS styles and that a browser's search finds.

The axes use "nice" ticks: a step of 1, 2, 2.5 or 5 times a power of ten, chosen as the smallest
such step that covers the data range in at most `n` intervals, with the axis extended outward to
whole steps. A y axis whose positive data span at least a factor of 10 is drawn on a log scale
with ticks at the decades.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .html import esc

# Okabe and Ito's colour-blind-safe palette (yellow left out: too faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#7F7F7F")
MARKERS_UP_TO = 30  # a line with at most this many points shows its points as dots


@dataclass(frozen=True)
class Line:
    """One polyline: `group` is its legend entry (several lines, e.g. seeds, may share one)."""
    group: str
    points: tuple[tuple[float, float], ...]
    colour: str


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Ticks covering [lo, hi] with a step of {1, 2, 2.5, 5} x 10^k, at most `n` intervals."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"nice_ticks needs a finite range lo <= hi, got [{lo}, {hi}]")
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-12))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def _decimals(step: float) -> int:
    dec = 0
    while dec < 10 and abs(step * 10**dec - round(step * 10**dec)) > 1e-6 * max(1.0, step * 10**dec):
        dec += 1
    return dec


def _label(v: float, dec: int) -> str:
    if abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-4):
        return f"{v:.0e}"
    return f"{v:,.{dec}f}"


def line_chart(lines: Sequence[Line], *, title: str, xlabel: str, ylabel: str,
               width: int = 520, height: int = 270) -> str:
    """A figure with an inline SVG chart of `lines` and an HTML legend (one entry per group).
    Non-finite points break a line instead of bending it to infinity."""
    pts = [(x, y) for ln in lines for x, y in ln.points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return f'<figure class="chart empty"><figcaption>{esc(title)}: no finite values recorded</figcaption></figure>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    log_y = min(ys) > 0 and max(ys) >= 10 * min(ys)
    xt = nice_ticks(min(xs), max(xs))
    if log_y:
        yt = [10.0**k for k in range(math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys))) + 1)]
        ymap = math.log10
    else:
        yt = nice_ticks(min(ys), max(ys))
        ymap = float
    left, right, top, bottom = 58, 14, 26, 40
    pw, ph = width - left - right, height - top - bottom
    x0, x1 = xt[0], xt[-1]
    y0, y1 = ymap(yt[0]), ymap(yt[-1])

    def X(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def Y(y: float) -> float:
        return top + ph - (ymap(y) - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{esc(title)}"><title>{esc(title)}</title>',
           f'<text class="ct" x="{left}" y="16">{esc(title)}</text>']
    xdec = _decimals(xt[1] - xt[0]) if len(xt) > 1 else 0
    for t in xt:
        out.append(f'<line class="grid" x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" y2="{top + ph}"/>'
                   f'<text class="tx" x="{X(t):.1f}" y="{top + ph + 14}">{_label(t, xdec)}</text>')
    ydec = 0 if log_y else (_decimals(yt[1] - yt[0]) if len(yt) > 1 else 0)
    for t in yt:
        lab = f"{t:g}" if log_y else _label(t, ydec)
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}"/>'
                   f'<text class="ty" x="{left - 6}" y="{Y(t) + 4:.1f}">{lab}</text>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    out.append(f'<text class="tx" x="{left + pw / 2:.1f}" y="{height - 6}">{esc(xlabel)}</text>')
    out.append(f'<text class="ty" transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" '
               f'style="text-anchor:middle">{esc(ylabel)}{" (log)" if log_y else ""}</text>')
    for ln in lines:
        d, pen = [], "M"
        finite = []
        for x, y in ln.points:
            if math.isfinite(x) and math.isfinite(y):
                d.append(f"{pen}{X(x):.1f},{Y(y):.1f}")
                finite.append((x, y))
                pen = "L"
            else:
                pen = "M"
        colour = esc(ln.colour)
        out.append(f'<path class="line" d="{" ".join(d)}" stroke="{colour}"><title>{esc(ln.group)}</title></path>')
        if len(finite) <= MARKERS_UP_TO:
            out.extend(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.6" fill="{colour}"/>' for x, y in finite)
    out.append("</svg>")
    groups: dict[str, str] = {}
    for ln in lines:
        groups.setdefault(ln.group, ln.colour)
    legend = "".join(f'<span class="key"><i style="background:{esc(c)}"></i>{esc(g)}</span>' for g, c in groups.items())
    return f'<figure class="chart">{"".join(out)}<figcaption>{legend}</figcaption></figure>'
