"""The report page: escaping of user text, self-containment, its sections, and that its numbers
are the arena's leaderboard and the store's verdicts."""
from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

from layerlab.arena.leaderboard import board
from layerlab.arena.store import Store
from layerlab.claims.card import read_card
from layerlab.cli import main
from layerlab.report import build_report, write_report
from layerlab.report.html import esc
from layerlab.report.verdicts import verdicts_section

from .conftest import HOSTILE, fake_suite, verdict_record

EXTERNAL = re.compile(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(html)
    return p.tags


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start:html.index("</section>", start)]


def test_empty_store_says_so(tmp_path):
    html = build_report(Store(tmp_path / "empty"))
    assert "No verdicts in this store" in html
    assert "No suite runs in this store" in html
    for sid in ("catalogue", "verdicts", "leaderboards"):
        assert f'<section id="{sid}">' in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_user_text_is_escaped_everywhere(toy_store):
    runs = fake_suite(toy_store, suite="toy<script>", label_prefix="<b>")
    ids = [r for rs in runs.values() for r in rs]
    toy_store.add_verdict(verdict_record("evil-card", ids, claim=HOSTILE, paper=HOSTILE, git_revision=HOSTILE,
                                         suite="toy<script>", rule={"type": HOSTILE},
                                         details={"rule": HOSTILE, HOSTILE: HOSTILE, "models": {HOSTILE: {"task": HOSTILE}}}))
    html = build_report(toy_store)
    assert HOSTILE not in html and "<b>mlp" not in html and "toy<script>" not in html
    assert esc(HOSTILE) in html and "&lt;b&gt;mlp" in html
    found = tags(html)
    assert [t for t, _ in found].count("script") == 1  # the page's own filter script, nothing injected
    assert not [a for t, a in found if t == "img"]
    assert not any(k.startswith("on") for _, a in found for k in a)  # no event handler attributes


def test_page_is_self_contained(toy_store):
    ids = [r for rs in fake_suite(toy_store).values() for r in rs]
    toy_store.add_verdict(verdict_record("swiglu-vs-mlp", ids, claim="see https://example.org/paper"))
    html = build_report(toy_store)
    assert not EXTERNAL.search(html)
    found = tags(html)
    assert not [t for t, _ in found if t in ("link", "iframe", "img", "object", "embed")]
    assert all("src" not in a for t, a in found if t == "script")
    assert "@import" not in html and "url(" not in html
    # every in-page link points at an element of the page
    ids_on_page = {a["id"] for _, a in found if a.get("id")}
    targets = {a["href"][1:] for t, a in found if t == "a" and (a.get("href") or "").startswith("#")}
    assert targets and targets <= ids_on_page, sorted(targets - ids_on_page)


def test_sections_verdicts_and_curves(toy_store):
    runs = fake_suite(toy_store)
    ids = runs["mlp"] + runs["swiglu"]
    toy_store.add_verdict(verdict_record("swiglu-vs-mlp", ids, verdict="supported"))  # an older verdict
    toy_store.add_verdict(verdict_record("swiglu-vs-mlp", ids))  # the latest: contradicted
    toy_store.add_verdict(verdict_record("mlp-above-chance", runs["mlp"], verdict="supported", observed=0.8,
                                         lo=0.775, hi=0.825, rule={"type": "threshold", "model": "mlp", "value": 0.5}))
    html = build_report(toy_store)
    verdicts = _section(html, "verdicts")
    table = verdicts[verdicts.index('id="verdict-table"'):verdicts.index("</table>")]
    assert table.count("<tr>") == 1 + 2  # header + one row per card (latest verdict only)
    assert "b-contradicted" in table and "b-supported" in table
    assert verdicts.index('id="v-mlp-above-chance"') < verdicts.index('id="v-swiglu-vs-mlp"')  # by card id
    article = verdicts[verdicts.index('id="v-swiglu-vs-mlp"'):]
    for text in ("SwiGLU beats an MLP at equal parameters", esc("swiglu − mlp on digits > 0"), "abc1234",
                 "[-0.13, -0.07]", "0.79 0.8 0.81", "digits: validation accuracy"):
        assert text in article, text
    assert article.count('class="line"') == 6  # one curve per run: 2 models x 3 seeds
    assert article.count('class="key"') == 2  # one legend entry per model
    for sid in ("catalogue", "leaderboards"):
        assert f'<section id="{sid}">' in html


def test_leaderboard_is_the_arenas_board(toy_store):
    fake_suite(toy_store, suite="toy")
    fake_suite(toy_store, suite="other", models={"mlp": (0.5, 0.6), "swiglu": (0.9, 0.95)})
    html = build_report(toy_store)
    boards = _section(html, "leaderboards")
    for suite in ("toy", "other"):
        for task, entries in board(toy_store, suite).items():
            start = boards.index(f'id="board-{suite}-{task}"')
            part = boards[start:boards.index("</table>", start)]
            rows = part.split("<tr>")[2:]
            assert len(rows) == len(entries)
            for row, e in zip(rows, entries):  # best first, as the arena orders them
                assert e.model in row
                assert f"{100 * e.test[0]:.1f}" in row and f"± {100 * e.test[1]:.1f}" in row
                assert f"{e.n_params:,}" in row and f"{e.ms_per_step:.1f}" in row
    # the built-in channels suite names a baseline (mlp): its board says better / worse / ≈ against it
    fake_suite(toy_store, suite="channels", models={"mlp": (0.5, 0.52, 0.51), "swiglu": (0.9, 0.91, 0.92)})
    boards = _section(build_report(toy_store), "leaderboards")
    part = boards[boards.index('id="suite-channels"'):boards.index('id="suite-other"')]
    assert "baseline mlp" in part and "vs mlp" in part and "b-better" in part and "b-base" in part
    assert "vs mlp" not in boards[boards.index('id="suite-other"'):]  # a suite from a file names none here


CARD = """
id = "swiglu-vs-mlp"
paper = "2002.05202"
claim = "SwiGLU beats an MLP at equal parameters"
where = "Table 1"
kind = "comparative"
deviations = "digits, 20 steps"
[suite]
seeds = [0, 1, 2]
lr = [1e-2]
train = { steps = 20 }
[[suite.tasks]]
name = "digits"
budget = 3000
[[suite.models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
n_layers = 1
[[suite.models]]
label = "swiglu"
backbone = "classifier"
channel = "swiglu"
n_layers = 1
[rule]
type = "difference"
model = "swiglu"
baseline = "mlp"
"""


def test_edited_card_and_unchecked_cards(toy_store, tmp_path):
    path = tmp_path / "swiglu-vs-mlp.toml"
    path.write_text(textwrap.dedent(CARD))
    card = read_card(path)
    other = tmp_path / "other-card.toml"
    other.write_text(textwrap.dedent(CARD).replace('id = "swiglu-vs-mlp"', 'id = "other-card"'))
    ids = [r for rs in fake_suite(toy_store).values() for r in rs]
    old = verdict_record("swiglu-vs-mlp", ids)  # recorded for another hash than the card has now
    html = verdicts_section(toy_store, [old], [card, read_card(other)], None)
    assert "the card has changed since" in html and card.hash in html
    assert 'id="unchecked"' in html and "other-card" in html.split('id="unchecked"')[1]
    same = verdicts_section(toy_store, [dict(old, card_hash=card.hash)], [card], None)
    assert "the card has changed since" not in same and 'id="unchecked"' not in same
    assert "Table 1" in same and "digits, 20 steps" in same  # where and deviations, from the card


def test_combined_rule_shows_each_part(toy_store):
    part = {"rule": "swiglu − mlp on digits > 0", "verdict": "contradicted", "observed": -0.1, "lo": -0.13, "hi": -0.07,
            "models": {"mlp": {"task": "digits", "mean": 0.8}}}
    rec = verdict_record("both", [], observed=None, lo=None, hi=None, verdict="inconclusive",
                         details={"rule": "(a) AND (b)", "parts": [part, dict(part, verdict="inconclusive")]})
    toy_store.add_verdict(rec)
    html = _section(build_report(toy_store), "verdicts")
    assert html.count("<b>part ") == 2 and "b-contradicted" in html
    assert "none: no training" in html


def test_cli_writes_the_report(tmp_path, capsys):
    store = tmp_path / "runs"
    fake_suite(Store(store))
    assert main(["report", "--store", str(store)]) == 0
    default = store / "report.html"
    assert default.is_file() and str(default.resolve()) in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "sub" / "r.html"
    assert main(["report", "--store", str(store), "-o", str(out)]) == 0
    assert out.read_text().count('id="board-toy-digits"') == 1
    assert write_report(Store(store), out) == out


def test_measurement_verdict_shows_its_own_columns():
    from layerlab.report.verdicts import models_table

    out = models_table({"measurement": {"mean": 0.01, "lo": 0.0, "hi": 0.02, "n": 3, "values": {"0": 0.0, "1": 0.01, "2": 0.02},
                                        "higher_is_better": False, "measure": "selu-fixed-point", "options": {"width": 64},
                                        "metric": "error", "mean variance": 1.0}})
    header = out[out.index("<thead>"):out.index("</thead>")]
    for col in ("mean", "95% CI", "per seed", "measure", "options", "mean variance"):
        assert f">{col}</th>" in header, col
    for col in ("task", "lr", "steps", "budget", "params", "metric", "higher_is_better"):
        assert f">{col}</th>" not in header, col  # no model has it, or it is bookkeeping
    assert "selu-fixed-point" in out and "0 0.01 0.02" in out


def test_unset_details_are_left_out():
    from layerlab.report.verdicts import render_numbers

    out = render_numbers({"statistic": "mean error", "split": None, "bound": 0.05})
    assert "<dt>statistic</dt>" in out and "<dt>bound</dt>" in out and "split" not in out
