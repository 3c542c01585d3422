"""The paper catalogue: its data against the seed list, its join with the registry, cards and
verdicts, strict parsing, and finding a paper."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerlab.arena.store import Store
from layerlab.claims import catalogue as cat
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.registry import entries

PAPERS_TSV = Path(__file__).resolve().parents[3] / "shared" / "papers.tsv"


@pytest.fixture(scope="module")
def papers() -> list[cat.CataloguePaper]:
    return cat.load_catalogue(strict=True)


def _seed_list() -> dict[str, str]:
    """title -> kind for the in-scope rows of the shared seed list (the test's own reading of it)."""
    if not PAPERS_TSV.is_file():
        pytest.fail(f"seed list missing: expected papers.tsv at {PAPERS_TSV} (the shared directory beside "
                    f"the repository)", pytrace=False)
    with open(PAPERS_TSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["title"]: r["kind"] for r in rows if r["kind"] != "out-of-scope"}


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


ENTRY = 'slug = "{slug}"\ntitle = "{title}"\nyear = 2024\narxiv = "{arxiv}"\nkind = "block"\n'
X = "[[paper]]\n" + ENTRY.format(slug="x", title="X", arxiv="")   # one valid entry


# ---- the data ----------------------------------------------------------------------------------
def test_catalogue_holds_exactly_the_in_scope_seed_papers(papers):
    seed = _seed_list()
    assert len(seed) == 180
    ours = {p.title: p.kind for p in papers if p.seed}
    missing = sorted(set(seed) - set(ours))
    extra = sorted(set(ours) - set(seed))
    assert not missing, f"seed papers not in the catalogue: {missing}"
    assert not extra, f"catalogue papers marked seed that are not in papers.tsv (mark them seed = false): {extra}"
    wrong_kind = {t: (ours[t], seed[t]) for t in seed if ours[t] != seed[t]}
    assert not wrong_kind, f"kind differs from papers.tsv (ours, tsv): {wrong_kind}"
    extras = [p for p in papers if not p.seed]
    assert all(p.title not in seed for p in extras)


def test_every_registered_block_paper_is_in_the_catalogue_and_implemented(papers):
    assert cat.unmatched_blocks() == [], "registered blocks whose Paper is not in the catalogue"
    registered = [e for e in entries() if e.paper is not None]
    assert registered
    for e in registered:
        joined = [p for p in papers if (e.kind, e.name) in {(s.kind, s.name) for s in p.systems}]
        own = [p for p in joined if (p.arxiv == e.paper.arxiv if e.paper.arxiv
                                     else cat.normalise_title(p.title) == cat.normalise_title(e.paper.title))]
        assert len(own) == 1, f"{e.kind} {e.name!r} ({e.paper.cite()}) is not joined to its paper: " \
                              f"{[p.slug for p in joined]}"
        assert own[0].status in ("implemented", "checked"), (e.kind, e.name, own[0].slug, own[0].status)
        assert own[0].year == e.paper.year, (e.name, own[0].year, e.paper.year)


def test_papers_without_complete_code_say_why(papers):
    for p in papers:
        assert p.status in cat.STATUSES
        if p.status == "missing":
            assert p.note, f"{p.slug}: nothing implements it and no note says why"
            assert not p.systems
        if p.partial:
            assert p.systems, f"{p.slug}: partial names no code that implements the part"
        if p.status == "implemented":
            assert p.systems and not p.partial


def test_every_system_file_and_test_exists(papers):
    root = Path(cat.__file__).resolve().parents[3]
    systems = [s for p in papers for s in p.systems]
    assert systems
    for s in systems:
        assert (root / s.file).is_file(), s
        for t in s.tests:
            assert (root / t).is_file() and Path(t).name.startswith("test_"), (s.name, t)
        assert s.file.startswith("src/layerlab/"), s
        mirror = Path("tests") / Path(s.file).relative_to("src/layerlab").parent / f"test_{Path(s.file).stem}.py"
        if (root / mirror).is_file():
            assert s.tests[0] == mirror.as_posix(), (s.name, s.tests)
    for s in systems:
        if s.kind in ("mixer", "channel", "norm", "activation"):
            assert s.tests, f"registered block {s.kind} {s.name!r}: no test file names it"


def test_coverage_counts_the_catalogue(papers):
    cov = cat.coverage(papers)
    seed = _seed_list()
    assert list(cov) == list(cat.KINDS)
    for kind, counts in cov.items():
        assert counts["total"] == sum(1 for k in seed.values() if k == kind)
        assert sum(counts[s] for s in cat.STATUSES) == counts["total"]
        for s in cat.STATUSES:
            assert counts[s] == sum(1 for p in papers if p.seed and p.kind == kind and p.status == s)
    everything = cat.coverage(papers, seed_only=False)
    assert sum(c["total"] for c in everything.values()) == len(papers)
    json.dumps([p.as_dict() for p in papers])  # the CLI's json output


# ---- strict parsing ----------------------------------------------------------------------------
def test_unknown_key_is_an_error_naming_it_and_the_valid_keys(tmp_path):
    body = "[[paper]]\n" + ENTRY.format(slug="x", title="X", arxiv="") + 'auther = "me"\n'
    path = _write(tmp_path, "block.toml", body)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'auther'; valid keys: slug, title"):
        cat.read_papers([path])


@pytest.mark.parametrize("body, message", [
    ("[[paper]]\n" + ENTRY.format(slug="Bad Slug", title="X", arxiv=""), "slug 'Bad Slug'"),
    ("[[paper]]\n" + ENTRY.format(slug="x", title="X", arxiv="arXiv:2312.00752"), "is not an arXiv id"),
    (X.replace("2024", '"2024"'), "year must be an integer"),
    (X.replace('"block"', '"training"'), "go in training.toml"),
    (X + 'note = ""\n', "note must be a non-empty string"),
    (X + 'systems = ["torch.nn.Linear"]\n', "inside layerlab"),
    ('title = "loose"\n', "unknown top-level key"),
    ('[[paper]]\nslug = "x"\n', "missing key"),
])
def test_malformed_entries_are_errors(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        cat.read_papers([_write(tmp_path, "block.toml", body)])


@pytest.mark.parametrize("second, what", [
    (ENTRY.format(slug="a", title="Other", arxiv="2401.00002"), "slug"),
    (ENTRY.format(slug="b", title="the  FIRST paper!", arxiv="2401.00002"), "title"),
    (ENTRY.format(slug="b", title="Other", arxiv="2401.00001"), "arXiv id"),
])
def test_a_paper_appears_once(tmp_path, second, what):
    first = "[[paper]]\n" + ENTRY.format(slug="a", title="The first paper", arxiv="2401.00001")
    a = _write(tmp_path, "block.toml", first)
    b = _write(tmp_path, "efficiency.toml", "[[paper]]\n" + second.replace('"block"', '"efficiency"'))
    with pytest.raises(ConfigError, match=f"repeats the {what} of paper 'a'"):
        cat.read_papers([a, b])


def test_unresolvable_system_is_an_error_when_strict(tmp_path, monkeypatch):
    monkeypatch.setattr(cat, "_load_cards", lambda: [])  # the real cards name papers this catalogue lacks
    path = _write(tmp_path, "block.toml", "[[paper]]\n" + ENTRY.format(slug="x", title="X", arxiv="")
                  + 'systems = ["layerlab.blocks.mixers.mamba.NoSuchMixer"]\n')
    with pytest.raises(ConfigError, match="has no attribute 'NoSuchMixer'"):
        cat.load_catalogue(paths=[path], strict=True)
    with pytest.warns(RuntimeWarning, match="NoSuchMixer"):
        (paper,) = cat.load_catalogue(paths=[path])
    assert paper.systems == () and paper.status == "missing"


def test_a_system_path_to_a_registered_block_names_the_block(tmp_path, monkeypatch):
    monkeypatch.setattr(cat, "_load_cards", lambda: [])  # the real cards name papers this catalogue lacks
    path = _write(tmp_path, "block.toml", "[[paper]]\n" + ENTRY.format(slug="x", title="X", arxiv="")
                  + 'systems = ["layerlab.blocks.mixers.mamba.Mamba", "layerlab.models.sequence.Residual"]\n')
    (paper,) = cat.load_catalogue(paths=[path], strict=True)
    assert [(s.kind, s.name) for s in paper.systems] == [("mixer", "mamba"),
                                                         ("models", "layerlab.models.sequence.Residual")]
    assert paper.systems[0].file == "src/layerlab/blocks/mixers/mamba.py"
    assert paper.status == "implemented"


# ---- cards and verdicts --------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeCard:
    id: str
    paper: str
    hash: str


def _verdict(card_id: str, card_hash: str, verdict: str) -> dict:
    return {"card_id": card_id, "card_hash": card_hash, "verdict": verdict, "rule": {}, "details": {}, "run_ids": []}


def test_cards_and_current_verdicts_join_their_paper(tmp_path, monkeypatch):
    cards = [FakeCard("mamba-parity", "arXiv:2312.00752", "h1"), FakeCard("mamba-recall", "mamba", "h2"),
             FakeCard("grokking-stablemax", "grokking-numerical-stability", "h3")]
    monkeypatch.setattr(cat, "_load_cards", lambda: cards)
    store = Store(tmp_path / "store")
    store.add_verdict(_verdict("mamba-parity", "h0", "contradicted"))   # an older version of the card
    store.add_verdict(_verdict("mamba-parity", "h1", "supported"))
    store.add_verdict(_verdict("mamba-recall", "h-old", "supported"))   # the card was edited since
    by_slug = {p.slug: p for p in cat.load_catalogue(store, strict=True)}
    mamba = by_slug["mamba"]
    assert mamba.cards == ("mamba-parity", "mamba-recall")
    got = [(v["card_id"], v["card_hash"], v["verdict"]) for v in mamba.verdicts]
    assert got == [("mamba-parity", "h1", "supported")]
    assert mamba.status == "checked"
    grok = by_slug["grokking-numerical-stability"]
    assert grok.cards == ("grokking-stablemax",) and grok.verdicts == () and grok.status == "implemented"
    assert by_slug["lru"].cards == () and by_slug["lru"].status == "implemented"
    assert {p.slug: p.status for p in cat.load_catalogue(None, strict=True)}["mamba"] == "implemented"


def test_a_card_naming_no_catalogue_paper_is_an_error_when_strict(monkeypatch):
    monkeypatch.setattr(cat, "_load_cards", lambda: [FakeCard("lost", "9999.99999", "h")])
    with pytest.raises(ConfigError, match="card 'lost' names paper '9999.99999'"):
        cat.load_catalogue(strict=True)


# ---- finding a paper -----------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["mamba", "MAMBA", "2312.00752", "arXiv:2312.00752v2",
                                   "https://arxiv.org/abs/2312.00752", "linear-time sequence modeling selective"])
def test_find_paper_by_slug_arxiv_id_or_title_words(papers, query):
    assert cat.find_paper(query, catalogue=papers).slug == "mamba"


def test_find_paper_by_exact_title_and_word_prefixes(papers):
    assert cat.find_paper("Attention Is Not What You Need", catalogue=papers).slug == "grassmann-flows"
    assert cat.find_paper("grokking numerical stab", catalogue=papers).slug == "grokking-numerical-stability"


def test_find_paper_suggests_on_a_near_miss(papers):
    with pytest.raises(UnknownNameError, match=r"no paper matches 'mamab'; did you mean 'mamba'"):
        cat.find_paper("mamab", catalogue=papers)
    with pytest.raises(UnknownNameError, match="deltaproduct"):
        cat.find_paper("delta product householder quaternions", catalogue=papers)


def test_find_paper_lists_an_ambiguous_query(papers):
    with pytest.raises(ConfigError, match=r"'kolmogorov' matches \d+ papers: .*kan"):
        cat.find_paper("kolmogorov", catalogue=papers)
    with pytest.raises(ConfigError, match="empty paper query"):
        cat.find_paper("  ", catalogue=papers)
