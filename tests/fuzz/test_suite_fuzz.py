"""Bad suite files, as a user writes them: `layerlab run FILE` refuses each in one line, exit 2, and
leaves the store as it was (or absent)."""
from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from .conftest import examples
from .harness import cli, refuse, snapshot, to_toml
from .inputs import base_suite, bad_suite, card_with_suite, missing_table, out_of_range, unknown_key, unknown_name, wrong_type

_n = itertools.count()


def _write(scratch, text: str | bytes) -> str:
    path = scratch / f"suite-{next(_n)}.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _refused(scratch, store, doc, mentions, fresh: bool) -> None:
    target = scratch / f"never-{next(_n)}" if fresh else store  # a new store path must not appear
    refuse(["run", _write(scratch, to_toml(doc)), "--store", str(target)], target, mentions=mentions)


def test_the_valid_base_suite_runs(scratch):
    """The base that the breaks start from is valid, so each refusal below is the break's."""
    target = scratch / "base-store"
    got = cli(["run", _write(scratch, to_toml(base_suite())), "--store", str(target)])
    assert got.code == 0 and got.err == "", str(got)
    assert snapshot(target)["rows"]["runs"] == 2


@settings(max_examples=examples(60))
@given(case=unknown_key(), fresh=st.booleans())
@example(case=({**base_suite(), "[[models]]": 1}, ("[[models]]",)), fresh=False)
@example(case=({**base_suite(), "[b]colour[/b]": 1}, ("[b]colour[/b]",)), fresh=True)
def test_unknown_keys(scratch, store, case, fresh):
    _refused(scratch, store, *case, fresh)


@settings(max_examples=examples(60))
@given(case=wrong_type(), fresh=st.booleans())
@example(case=({**base_suite(), "lr": 0.001}, ("lr",)), fresh=False)
@example(case=({**base_suite(), "seeds": "01"}, ("seeds",)), fresh=False)
def test_wrong_types(scratch, store, case, fresh):
    _refused(scratch, store, *case, fresh)


@settings(max_examples=examples(12))
@given(case=missing_table(), fresh=st.booleans())
def test_missing_tables(scratch, store, case, fresh):
    _refused(scratch, store, *case, fresh)


@settings(max_examples=examples(50))
@given(case=out_of_range(), fresh=st.booleans())
def test_out_of_range_numbers(scratch, store, case, fresh):
    _refused(scratch, store, *case, fresh)


@settings(max_examples=examples(40))
@given(case=unknown_name(), fresh=st.booleans())
def test_unknown_tasks_blocks_and_names(scratch, store, case, fresh):
    _refused(scratch, store, *case, fresh)


@settings(max_examples=examples(15))
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_text_that_is_not_toml(scratch, store, text):
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        refuse(["run", _write(scratch, text), "--store", str(store)], store, mentions=("invalid TOML",))
    else:  # valid TOML (a comment, a key): still not a suite
        refuse(["run", _write(scratch, text), "--store", str(store)], store)


def test_files_that_cannot_be_read(scratch, store):
    refuse(["run", _write(scratch, b"name = \"\xff\xfe\"\n"), "--store", str(store)], store, mentions=("UTF-8",))
    folder = scratch / "a-folder.toml"
    folder.mkdir()
    refuse(["run", str(folder), "--store", str(store)], store, mentions=(str(folder),))
    refuse(["run", str(scratch / "missing.toml"), "--store", str(store)], store, mentions=("missing.toml",))
    refuse(["run", _write(scratch, ""), "--store", str(store)], store, mentions=("[[tasks]]",))


@settings(max_examples=examples(10))
@given(case=bad_suite())
def test_bad_suites_inside_a_card_are_refused_the_same_way(scratch, store, case):
    """A card's inline [suite] is a suite: the same breaks, the same refusals (through `layerlab check`)."""
    doc, mentions = case
    path = scratch / f"fz-card-{next(_n)}.toml"
    path.write_text(to_toml(card_with_suite(doc)))
    refuse(["check", str(path), "--store", str(store)], store, mentions=mentions)
