"""The report's building blocks: escaping, number formats, ticks and the SVG coordinate map."""
from __future__ import annotations

import math
import random
import re

import pytest

from layerlab.report.html import anchor, esc, num, table
from layerlab.report.svg import Line, line_chart, nice_ticks


def test_esc_escapes_markup_and_quotes():
    assert esc('<script>"&\'') == "&lt;script&gt;&quot;&amp;&#x27;"
    assert esc(None) == ""
    assert esc(3) == "3"


def test_num_formats():
    assert num(None) == "—" and num(math.nan) == "—"
    assert num(1234) == "1,234"
    assert num(0.12345) == "0.123"
    assert num(12.345) == "12.3"
    assert num(12345.6) == "12,346"
    assert num(1e-5) == "1.00e-05"
    assert num(0.0) == "0"
    assert num(math.inf) == "∞"
    assert num("<b>") == "&lt;b&gt;"


def test_anchor_is_a_safe_fragment():
    assert anchor("suite", "A b@C/<x>") == "suite-a-b-c-x"
    assert anchor("<>") == "x"


def test_table_aligns_numeric_columns_and_adds_row_attributes():
    out = table(["name", "value"], [["a", "1"], ["b", "2"]], numeric=[False, True], table_id="t",
                row_attrs=['data-k="1"', ""])
    assert '<table class="" id="t">' in out
    assert out.count("<td class=num>") == 2 and out.count("<th scope=\"col\" class=num>") == 1
    assert '<tr data-k="1">' in out and "<tr><td>b</td>" in out


@pytest.mark.parametrize("lo,hi,expected", [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.0, 7.0, [0.0, 2.0, 4.0, 6.0, 8.0]),
    (0.33, 0.87, [0.2, 0.4, 0.6, 0.8, 1.0]),
    (10.0, 30.0, [10.0, 15.0, 20.0, 25.0, 30.0]),
])
def test_nice_ticks_examples(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected, abs=1e-12)


def test_nice_ticks_cover_the_range_with_a_nice_step():
    rng = random.Random(0)
    for _ in range(500):
        a = rng.uniform(-1e3, 1e3) * 10 ** rng.randint(-4, 2)
        b = a + abs(rng.gauss(0, 1)) * 10 ** rng.randint(-5, 3)
        t = nice_ticks(a, b, n=5)
        step = t[1] - t[0]
        assert t[0] <= a + 1e-9 * abs(step) and t[-1] >= b - 1e-9 * abs(step)
        assert len(t) - 1 <= 6  # at most n + 1 intervals after rounding outward
        # differences of large ticks carry rounding of order eps * |tick|
        tol = 1e-9 + 1e-14 * max(abs(a), abs(b)) / step
        mantissa = step / 10 ** math.floor(math.log10(step) + tol)
        assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5, 10)) < 10 * tol
        assert all(abs((t[i + 1] - t[i]) / step - 1) < tol for i in range(len(t) - 1))


def test_nice_ticks_rejects_a_bad_range():
    with pytest.raises(ValueError, match="finite range"):
        nice_ticks(1.0, math.nan)
    with pytest.raises(ValueError, match="lo <= hi"):
        nice_ticks(2.0, 1.0)
    assert len(nice_ticks(3.0, 3.0)) >= 2  # a flat series still gets an axis


def _paths(svg: str) -> list[str]:
    return re.findall(r'<path class="line" d="([^"]*)"', svg)


def test_line_chart_maps_data_to_the_plot_area():
    # plot area: x from 58 to 520 - 14 = 506, y from 26 to 270 - 40 = 230; ticks 0..10 and 0..1
    svg = line_chart([Line("m", ((0.0, 0.0), (10.0, 1.0), (5.0, 0.5)), "#000")], title="t", xlabel="step", ylabel="acc")
    assert _paths(svg) == ["M58.0,230.0 L506.0,26.0 L282.0,128.0"]


def test_line_chart_log_axis_and_breaks_at_non_finite_values():
    svg = line_chart([Line("loss", ((0.0, 1.0), (5.0, 0.1), (7.0, math.nan), (10.0, 0.01)), "#000")],
                     title="t", xlabel="step", ylabel="loss")
    assert "(log)" in svg  # two decades apart: log scale, ticks 0.01, 0.1, 1
    # 0.1 is halfway between 0.01 and 1 on a log axis: y = 26 + 204 / 2
    assert _paths(svg) == ["M58.0,26.0 L282.0,128.0 M506.0,230.0"]


def test_line_chart_escapes_labels_and_groups_the_legend():
    lines = [Line("<b>m</b>", ((0.0, 1.0), (1.0, 2.0)), "#111"), Line("<b>m</b>", ((0.0, 2.0), (1.0, 3.0)), "#111")]
    svg = line_chart(lines, title="<i>t</i>", xlabel="x", ylabel="y")
    assert "<b>" not in svg and "<i>" not in svg and "&lt;b&gt;m&lt;/b&gt;" in svg
    assert svg.count('class="key"') == 1  # two seeds of one model: one legend entry


def test_line_chart_without_finite_points_says_so():
    out = line_chart([Line("m", ((0.0, math.nan),), "#000")], title="curve", xlabel="x", ylabel="y")
    assert "no finite values" in out and "<svg" not in out
