"""The report in a real browser: headless Chromium (Debian's package) renders a report of a store
with a claim card checked for real (a tiny suite trained for a few steps) and a second verdict
recorded beside it; the test reads the rendered DOM and takes a screenshot.

Chromium is required, never skipped: `make test` installs it where it is missing
(apt-get install -y chromium, as root)."""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rich.console import Console

from layerlab.arena.store import Store
from layerlab.claims.card import read_card
from layerlab.claims.check import check_card
from layerlab.report import write_report

from .conftest import HOSTILE, verdict_record

CARD = """
id = "tiny-swiglu-vs-mlp"
paper = "2002.05202"
claim = "SwiGLU beats an MLP at equal parameters"
where = "Table 1"
kind = "comparative"
deviations = "8x8 digits instead of language modelling, 12 steps, 2 seeds"
[suite]
seeds = [0, 1]
lr = [1e-2]
train = { steps = 12, batch_size = 32, eval_every = 4, log_every = 4 }
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


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is missing: install Debian's package with `apt-get update && apt-get install "
                    "-y chromium` (as root; `make test` does it when it can)", pytrace=False)
    return exe


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


class Dom(HTMLParser):
    """What the test reads from the rendered DOM: ids, each table's rows by table id or class,
    the text of elements by id, and every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.tables: list[dict] = []  # {"id", "class", "rows": [[cell text]]}
        self.text_by_id: dict[str, str] = {}
        self._open_ids: list[tuple[str, str]] = []  # (tag, id) of elements whose text we collect
        self._cell: list[str] | None = None
        self.hidden_rows: list[bool] = []  # the paper list's body rows: hidden by the filter?

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.add(a["id"])
            self._open_ids.append((tag, a["id"]))
            self.text_by_id[a["id"]] = ""
        if tag == "table":
            self.tables.append({"id": a.get("id"), "class": a.get("class") or "", "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
            if self.tables[-1]["id"] == "paper-list" and len(self.tables[-1]["rows"]) > 1:
                self.hidden_rows.append("hidden" in a)
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]["rows"]:
            self.tables[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for _, i in self._open_ids:
            self.text_by_id[i] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Store, dict]:
    chromium()  # fail before training when there is no browser
    root = tmp_path_factory.mktemp("browser")
    card_path = root / "tiny-swiglu-vs-mlp.toml"
    card_path.write_text(textwrap.dedent(CARD))
    store = Store(root / "runs")
    t0 = time.time()
    # trains 4 tiny runs (2 models x 2 seeds, 12 steps) and records the verdict
    result = check_card(read_card(card_path), store, console=Console(file=io.StringIO()))
    runs = result.record["run_ids"]
    store.add_verdict(verdict_record("hostile-card", runs, claim=HOSTILE, suite=result.record["suite"]))
    path = write_report(store, root / "report.html")
    return path, store, {"setup_s": time.time() - t0, "runs": runs}


def test_rendered_dom_has_the_verdicts_catalogue_and_leaderboard(report, tmp_path):
    path, store, info = report
    t0 = time.time()
    dom_text = run_chromium(["--dump-dom", path.resolve().as_uri()], tmp_path / "profile").stdout
    dom = Dom()
    dom.feed(dom_text)
    for sid in ("catalogue", "coverage", "verdicts", "leaderboards", "verdict-table"):
        assert sid in dom.ids, f"no #{sid} in the rendered page"
    verdict_table = next(t for t in dom.tables if t["id"] == "verdict-table")
    header, *rows = verdict_table["rows"]
    assert header[:3] == ["card", "paper", "verdict"]
    cards = {v["card_id"]: v["verdict"] for v in store.verdicts()}
    assert len(rows) == len(cards) == 2  # one row per card
    assert {r[0]: r[2] for r in rows} == cards
    boards = [t for t in dom.tables if "board" in t["class"].split()]
    assert boards, "no leaderboard table rendered"
    models = {r[1] for t in boards for r in t["rows"][1:]}
    assert models == {"mlp", "swiglu"}
    # the hostile claim is text on the page, not markup: no image, one script (the page's own)
    assert HOSTILE in dom.text_by_id["v-hostile-card"]
    assert "img" not in dom.tags and dom.tags.count("script") == 1
    # the inline script ran: it replaced the static count of papers with "N of N papers"
    if "paper-count" in dom.ids:
        assert " of " in dom.text_by_id["paper-count"]
    # each verdict's learning curves: one line per run at the chosen learning rate
    assert dom_text.count('class="line"') >= len(info["runs"])
    print(f"\nbrowser setup (check + report) {info['setup_s']:.1f} s, dump-dom {time.time() - t0:.1f} s")


def test_paper_filter_runs_in_the_browser(report, tmp_path):
    """The inline script filters the paper list; the page's query string presets the filters."""
    path, _, _ = report
    url = path.resolve().as_uri() + "?status=implemented&q=delta"
    dom = Dom()
    dom.feed(run_chromium(["--dump-dom", url], tmp_path / "profile").stdout)
    papers = next(t for t in dom.tables if t["id"] == "paper-list")
    rows = papers["rows"][1:]
    shown = [r for r, hidden in zip(rows, dom.hidden_rows) if not hidden]
    assert 0 < len(shown) < len(rows)
    assert all(r[0] == "implemented" and "delta" in " ".join(r).lower() for r in shown)
    assert dom.text_by_id["paper-count"].strip() == f"{len(shown)} of {len(rows)} papers"


def test_screenshot_is_a_real_picture(report, tmp_path):
    path, _, _ = report
    shot = tmp_path / "report.png"
    t0 = time.time()
    run_chromium([f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", path.resolve().as_uri()],
                 tmp_path / "profile")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 2000)
    assert len(data) > 40_000, f"screenshot of {len(data)} bytes: a blank page?"
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(shot)[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100, "the screenshot has almost no colours: nothing rendered"
    header = pixels[:60].mean(axis=(0, 1))
    assert header.max() < 0.3, f"the page's dark header is missing from the screenshot (mean colour {header})"
    print(f"\nscreenshot {shot} ({len(data):,} bytes) in {time.time() - t0:.1f} s")
