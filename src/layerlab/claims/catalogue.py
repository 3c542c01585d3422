"""The paper catalogue: every paper layerlab tracks, joined with its code, claim cards and verdicts.

Package data, one TOML file per kind in ``claims/papers/`` (``block``, ``training``, ``theory``,
``instrument``, ``efficiency``), each an array of tables::

    [[paper]]
    slug = "mamba"                 # unique, [a-z0-9-]
    title = "Mamba: ..."           # unique
    year = 2023
    arxiv = "2312.00752"           # "" where the paper has none
    kind = "block"                 # the file's kind
    systems = ["layerlab.lens.hessian.top_eigenvalues"]   # optional: code implementing it
    partial = "what is missing"    # optional: implemented in part
    note = "why not implemented"   # needed when nothing implements the paper
    seed = false                   # optional: not one of the seed papers (default true)

Parsing is strict: an unknown key, a wrong type or a duplicate slug, title or arXiv id is a
``ConfigError`` naming the file, the paper and the fix.

At load time each paper is joined with
- the registered blocks whose ``Paper`` names it (by arXiv id, else by normalised title),
- the code its ``systems`` name (resolved with importlib),
- the claim cards about it (``layerlab.claims.card``; a card names its paper by arXiv id or slug),
- the newest verdict of each of those cards in a store, for the card's current hash.

Status: ``checked`` (a verdict exists) > ``implemented`` (code exists, no ``partial``) >
``partial`` > ``missing``.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import re
import tomllib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from ..arena.store import Store

KINDS = ("block", "training", "theory", "instrument", "efficiency")
STATUSES = ("checked", "implemented", "partial", "missing")
REQUIRED_KEYS = ("slug", "title", "year", "arxiv", "kind")
OPTIONAL_KEYS = ("systems", "partial", "note", "seed")
VALID_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ARXIV = re.compile(r"\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7}")
_PACKAGE = Path(__file__).resolve().parents[1]          # .../layerlab
if _PACKAGE.parent.name == "src":                        # a source checkout: <repo>/src/layerlab
    _REPO, _PREFIX = _PACKAGE.parents[1], "src/layerlab"
else:                                                    # an installed package
    _REPO, _PREFIX = _PACKAGE.parent, "layerlab"


@dataclass(frozen=True)
class System:
    """Code implementing a paper: a registered block (kind "mixer", name "mamba") or another
    object (kind = its layerlab subpackage, e.g. "lens"; name = its dotted path)."""

    kind: str
    name: str
    file: str                      # relative to the repository, e.g. "src/layerlab/blocks/mixers/mamba.py"
    tests: tuple[str, ...] = ()    # existing test files for it, relative to the repository


@dataclass(frozen=True)
class CataloguePaper:
    slug: str
    title: str
    year: int
    arxiv: str
    kind: str
    note: str
    partial: str
    systems: tuple[System, ...]
    cards: tuple[str, ...]
    verdicts: tuple[dict, ...]
    status: str
    seed: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        out = asdict(self)
        out["systems"] = [asdict(s) for s in self.systems]
        out["cards"] = list(self.cards)
        out["verdicts"] = [dict(v) for v in self.verdicts]
        return out


@dataclass(frozen=True)
class _Record:
    """One ``[[paper]]`` table as parsed, before the join."""

    slug: str
    title: str
    year: int
    arxiv: str
    kind: str
    systems: tuple[str, ...] = ()
    partial: str = ""
    note: str = ""
    seed: bool = True
    source: str = field(default="", compare=False)


# ---- parsing ---------------------------------------------------------------------------------
def papers_dir() -> Path:
    """The folder of the catalogue's TOML files (package data)."""
    return Path(__file__).resolve().parent / "papers"


def normalise_title(title: str) -> str:
    """Lower case, every run of non-alphanumerics one space: the key titles are compared by."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", title.lower()).split())


def read_papers(paths: Iterable[str | Path] | None = None) -> list[_Record]:
    """Parse the catalogue files (default: every ``papers/*.toml``) strictly; see the module doc."""
    paths = sorted(papers_dir().glob("*.toml")) if paths is None else [Path(p) for p in paths]
    records: list[_Record] = []
    seen: dict[str, dict[str, _Record]] = {"slug": {}, "title": {}, "arXiv id": {}}
    for path in paths:
        for rec in _read_file(path):
            for what, key in (("slug", rec.slug), ("title", normalise_title(rec.title)), ("arXiv id", rec.arxiv)):
                if not key:
                    continue
                other = seen[what].get(key)
                if other is not None:
                    raise ConfigError(f"{rec.source}: paper {rec.slug!r} repeats the {what} of paper "
                                      f"{other.slug!r} ({other.source}); each paper appears once")
                seen[what][key] = rec
            records.append(rec)
    return records


def _read_file(path: Path) -> list[_Record]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    extra = sorted(set(data) - {"paper"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(map(repr, extra))}; "
                          f"a catalogue file holds only [[paper]] tables")
    tables = data.get("paper", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: 'paper' must be an array of tables, written [[paper]]")
    return [_check_entry(path, i, t) for i, t in enumerate(tables, 1)]


def _check_entry(path: Path, i: int, t: dict[str, Any]) -> _Record:
    where = f"{path}: paper #{i}" + (f" ({t['slug']!r})" if isinstance(t.get("slug"), str) else "")
    unknown = sorted(set(t) - set(VALID_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid keys: {', '.join(VALID_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in t]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))} "
                          f"(required: {', '.join(REQUIRED_KEYS)})")

    def text(key: str, *, allow_empty: bool = False) -> str:
        if key not in t:
            return ""
        v = t[key]
        if not isinstance(v, str) or not (allow_empty or v.strip()):
            raise ConfigError(f"{where}: {key} must be a {'string' if allow_empty else 'non-empty string'}, got {v!r}")
        return v.strip()

    slug = text("slug")
    if not _SLUG.fullmatch(slug):
        raise ConfigError(f"{where}: slug {slug!r} must be lowercase letters, digits and single hyphens")
    year = t["year"]
    if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2100:
        raise ConfigError(f"{where}: year must be an integer such as 2023, got {year!r}")
    arxiv = text("arxiv", allow_empty=True)
    if arxiv and not _ARXIV.fullmatch(arxiv):
        raise ConfigError(f"{where}: arxiv {arxiv!r} is not an arXiv id such as 2312.00752 (no prefix, no "
                          f"version); write \"\" when the paper has none")
    kind = text("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if path.stem in KINDS and kind != path.stem:
        raise ConfigError(f"{where}: kind {kind!r} in {path.name}; papers of kind {kind!r} go in {kind}.toml")
    systems = t.get("systems", [])
    if not isinstance(systems, list) or not all(isinstance(s, str) and s.startswith("layerlab.") for s in systems):
        raise ConfigError(f"{where}: systems must be a list of dotted paths inside layerlab, such as "
                          f"\"layerlab.lens.hessian.trace\"; got {systems!r}")
    seed = t.get("seed", True)
    if not isinstance(seed, bool):
        raise ConfigError(f"{where}: seed must be true or false, got {seed!r}")
    return _Record(slug, text("title"), year, arxiv, kind, tuple(systems), text("partial"), text("note"), seed,
                   str(path))


# ---- the join --------------------------------------------------------------------------------
def _rel(path: str | Path | None) -> str:
    if not path:
        return ""
    p = Path(path).resolve()
    try:
        return p.relative_to(_REPO).as_posix()
    except ValueError:
        return str(p)


def _entry_file(entry: Any) -> str:
    src = getattr(entry, "source_file", None)
    if isinstance(src, str) and src and not Path(src).is_absolute():
        return f"{_PREFIX}/{src}"
    obj = getattr(entry, "cls", None) or getattr(entry, "obj", None)
    return _object_file(obj)


def _object_file(obj: Any) -> str:
    try:
        if inspect.ismodule(obj):
            return _rel(obj.__file__)
        return _rel(inspect.getsourcefile(inspect.unwrap(obj)))  # unwrap: decorators such as torch.no_grad
    except (TypeError, ValueError):
        return ""


@lru_cache(maxsize=1)
def _test_index() -> tuple[tuple[str, frozenset[str], frozenset[str]], ...]:
    """(path relative to the repo, its words, its one-line string literals) of every
    tests/**/test_*.py outside tests/claims (whose tests name blocks only as examples)."""
    root = _REPO / "tests"
    if not root.is_dir():
        return ()
    out = []
    for p in sorted(root.rglob("test_*.py")):
        rel = p.relative_to(_REPO).as_posix()
        if rel.startswith("tests/claims/"):
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        strings = frozenset(m.group(2) for m in re.finditer(r"""(['"])([^'"\n]*)\1""", text))
        out.append((rel, frozenset(re.findall(r"\w+", text)), strings))
    return tuple(out)


def tests_for(file: str, *, quoted: Sequence[str] = (), words: Sequence[str] = ()) -> tuple[str, ...]:
    """Test files of the code in `file` (relative to the repo): the mirrored test module (e.g.
    ``tests/blocks/mixers/test_mamba.py`` for ``src/layerlab/blocks/mixers/mamba.py``) first, then
    every test file that names it: one of `quoted` as a string literal or one of `words` as a word."""
    index = _test_index()
    found: list[str] = []
    if file.startswith(_PREFIX + "/"):
        sub = Path(file[len(_PREFIX) + 1:])
        mirror = (Path("tests") / sub.parent / f"test_{sub.stem}.py").as_posix()
        if any(rel == mirror for rel, _, _ in index):
            found.append(mirror)
    for rel, file_words, strings in index:
        if rel not in found and (any(q in strings for q in quoted if q) or any(w in file_words for w in words if w)):
            found.append(rel)
    return tuple(found)


def _block_system(entry: Any) -> System:
    cls = getattr(entry, "cls", None) or getattr(entry, "obj", None)
    file = _entry_file(entry)
    tests = tests_for(file, quoted=(entry.name,), words=(getattr(cls, "__name__", ""),))
    return System(entry.kind, entry.name, file, tests)


def resolve(path: str) -> Any:
    """The object a dotted path names (module, then attributes); ``ConfigError`` if there is none."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise
        for j in range(i, len(parts)):
            if not hasattr(obj, parts[j]):
                raise ConfigError(f"system {path!r}: {'.'.join(parts[:j])!r} has no attribute {parts[j]!r}; "
                                  f"fix the dotted path in the catalogue")
            obj = getattr(obj, parts[j])
        return obj
    raise ConfigError(f"system {path!r}: no module of that path can be imported; fix the dotted path in the catalogue")


def system_for(path: str) -> System:
    """The System a dotted path names: a registered block is named by its registry kind and name."""
    obj = resolve(path)
    kind, name = getattr(obj, "registry_kind", None), getattr(obj, "registry_name", None)
    if inspect.isclass(obj) and kind and name:
        from ..registry import get
        try:
            entry = get(kind, name)
        except ConfigError:
            entry = None
        if entry is not None and (getattr(entry, "cls", None) or getattr(entry, "obj", None)) is obj:
            return _block_system(entry)
    parts = path.split(".")
    file = _object_file(obj)
    return System(parts[1] if len(parts) > 1 else "code", path, file, tests_for(file, words=(parts[-1],)))


def _block_entries() -> list[Any]:
    from ..registry import entries
    return [e for e in entries() if getattr(e, "paper", None) is not None]


def _index(records: Sequence[_Record]) -> tuple[dict[str, _Record], dict[str, _Record]]:
    return ({r.arxiv: r for r in records if r.arxiv}, {normalise_title(r.title): r for r in records})


def _match(paper: Any, by_arxiv: dict[str, _Record], by_title: dict[str, _Record]) -> _Record | None:
    arxiv = (getattr(paper, "arxiv", None) or "").strip()
    if arxiv and arxiv in by_arxiv:
        return by_arxiv[arxiv]
    return by_title.get(normalise_title(paper.title))


def unmatched_blocks(records: Sequence[_Record] | None = None) -> list[Any]:
    """Registered blocks whose ``Paper`` is not in the catalogue (it should be: add it)."""
    by_arxiv, by_title = _index(read_papers() if records is None else records)
    return [e for e in _block_entries() if _match(e.paper, by_arxiv, by_title) is None]


def _load_cards() -> list[Any]:
    try:
        from .card import load_cards
    except ModuleNotFoundError as e:  # the card module is not there (yet): no cards
        if e.name == f"{__package__}.card":
            return []
        raise
    return list(load_cards())


def _arxiv_key(text: str) -> str:
    t = text.strip()
    t = re.sub(r"^(?:https?://)?(?:www\.)?arxiv\.org/(?:abs|pdf)/", "", t, flags=re.I)
    t = re.sub(r"^arxiv:\s*", "", t, flags=re.I)
    t = re.sub(r"(?:v\d+)?(?:\.pdf)?$", "", t)
    return t if _ARXIV.fullmatch(t) else ""


def _fail(msg: str, strict: bool) -> None:
    if strict:
        raise ConfigError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def load_catalogue(store: Store | None = None, *, strict: bool = False,
                   paths: Iterable[str | Path] | None = None) -> list[CataloguePaper]:
    """Every catalogue paper joined with its systems, cards and (given a store) verdicts.

    ``strict``: an unresolvable ``systems`` path or a card naming no catalogue paper is a
    ``ConfigError``; otherwise it is left out with a ``RuntimeWarning``."""
    records = read_papers(paths)
    by_arxiv, by_title = _index(records)
    by_slug = {r.slug: r for r in records}

    systems: dict[str, list[System]] = {r.slug: [] for r in records}
    for entry in _block_entries():
        rec = _match(entry.paper, by_arxiv, by_title)
        if rec is not None:
            systems[rec.slug].append(_block_system(entry))
    for rec in records:
        for path in rec.systems:
            try:
                sysm = system_for(path)
            except ConfigError as e:
                _fail(f"{rec.source}: paper {rec.slug!r}: {e}", strict)
                continue
            if all((s.kind, s.name) != (sysm.kind, sysm.name) for s in systems[rec.slug]):
                systems[rec.slug].append(sysm)

    cards: dict[str, list[Any]] = {r.slug: [] for r in records}
    for card in _load_cards():
        key = str(card.paper).strip()
        rec = by_slug.get(key.lower()) or by_arxiv.get(_arxiv_key(key))
        if rec is None:
            _fail(f"card {card.id!r} names paper {key!r}, which is not in the catalogue (use a slug or arXiv id "
                  f"from `layerlab papers`)", strict)
            continue
        cards[rec.slug].append(card)

    latest: dict[str, dict] = {}
    if store is not None and any(cards.values()):
        current = {c.id: c.hash for cs in cards.values() for c in cs}
        for row in store.verdicts(latest=False):  # oldest first: the last match is the newest
            if current.get(row["card_id"]) == row.get("card_hash"):
                latest[row["card_id"]] = row

    out = []
    for rec in records:
        ids = tuple(sorted(c.id for c in cards[rec.slug]))
        verdicts = tuple(latest[i] for i in ids if i in latest)
        found = tuple(systems[rec.slug])
        status = ("checked" if verdicts else "implemented" if found and not rec.partial
                  else "partial" if rec.partial else "missing")
        out.append(CataloguePaper(rec.slug, rec.title, rec.year, rec.arxiv, rec.kind, rec.note, rec.partial,
                                  found, ids, verdicts, status, rec.seed))
    return out


# ---- queries ---------------------------------------------------------------------------------
def kinds() -> tuple[str, ...]:
    """The paper kinds, in catalogue order."""
    return KINDS


def coverage(catalogue: Sequence[CataloguePaper] | None = None, *, store: Store | None = None,
             seed_only: bool = True) -> dict[str, dict[str, int]]:
    """Per kind, how many papers are checked, implemented, partial, missing, and their total.
    ``seed_only`` (default) counts the seed papers only, not the extra (``seed = false``) ones."""
    papers = load_catalogue(store) if catalogue is None else catalogue
    out = {k: {**{s: 0 for s in STATUSES}, "total": 0} for k in KINDS}
    for p in papers:
        if seed_only and not p.seed:
            continue
        out[p.kind][p.status] += 1
        out[p.kind]["total"] += 1
    return out


def _words(p: CataloguePaper) -> list[str]:
    return normalise_title(p.title).split() + p.slug.split("-")


def _word_hit(w: str, words: list[str]) -> bool:
    return w in words or (len(w) >= 4 and any(x.startswith(w) for x in words))


def find_paper(query: str, store: Store | None = None, *,
               catalogue: Sequence[CataloguePaper] | None = None) -> CataloguePaper:
    """One paper by slug, arXiv id (``2312.00752``, ``arXiv:2312.00752v2``, an arxiv.org link) or
    words of its title. No match is an ``UnknownNameError`` with suggestions; several, a
    ``ConfigError`` listing them."""
    papers = load_catalogue(store) if catalogue is None else catalogue
    q = query.strip()
    if not q:
        raise ConfigError("empty paper query; give a slug, an arXiv id or words of the title")
    for p in papers:
        if p.slug == q.lower():
            return p
    aid = _arxiv_key(q)
    if aid:
        for p in papers:
            if p.arxiv == aid:
                return p
    nq = normalise_title(q)
    for p in papers:
        if normalise_title(p.title) == nq:
            return p
    terms = nq.split()
    hits = [p for p in papers if terms and all(_word_hit(w, _words(p)) for w in terms)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = "; ".join(f"{p.slug} ({p.title})" for p in hits[:8]) + ("; ..." if len(hits) > 8 else "")
        raise ConfigError(f"{query!r} matches {len(hits)} papers: {listed}. Give more title words or a slug.")
    slugs = [p.slug for p in papers]
    titles = {normalise_title(p.title): p.slug for p in papers}
    near = difflib.get_close_matches(q.lower(), slugs, n=3, cutoff=0.6)
    near += [titles[t] for t in difflib.get_close_matches(nq, list(titles), n=3, cutoff=0.6)]
    if not near and terms:  # papers sharing the most query words
        scored = sorted(((sum(_word_hit(w, _words(p)) for w in terms), p.slug) for p in papers), reverse=True)
        near = [s for n, s in scored[:3] if n > 0]
    near = list(dict.fromkeys(near))
    hint = f"; did you mean {', '.join(map(repr, near))}?" if near else "."
    raise UnknownNameError(f"no paper matches {query!r}{hint} Query by slug, arXiv id or title words; "
                           f"`layerlab papers` lists all {len(papers)}.")


def paper_kinds(papers: Iterable[str]) -> dict[str, str]:
    """The catalogue kind (block, training, ...) of each card's ``paper`` (a slug or an arXiv id);
    a paper not in the catalogue maps to ""."""
    records = read_papers()
    by_slug = {r.slug: r.kind for r in records}
    by_arxiv = {r.arxiv: r.kind for r in records if r.arxiv}
    return {p: by_slug.get(p.strip().lower()) or by_arxiv.get(_arxiv_key(p)) or "" for p in papers}
