"""Bad command lines, as a new user types them: unknown commands and flags, bad option values, missing,
malformed and foreign run ids, store paths that are not stores, unwritable outputs. Each ends in one
error line naming the problem, exit 2, and leaves the store (or its absence) as it was."""
from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from layerlab.cli import build_parser

from .conftest import examples
from .harness import cli, refuse, snapshot, to_toml
from .inputs import base_suite, card_with_suite, user_text, words

_n = itertools.count()
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse's own table)
STORE_COMMANDS = ("run", "board", "export", "runs", "show", "lens", "plot", "check", "verdicts", "papers", "report")
plain = user_text.filter(lambda s: not s.startswith("-"))  # what argparse reads as a value, not a flag


def _options(command: str) -> set[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # noqa: SLF001
    return {o for a in sub._actions for o in a.option_strings}  # noqa: SLF001


def _suite_file(scratch) -> str:
    path = scratch / f"ok-{next(_n)}.toml"
    path.write_text(to_toml(base_suite()))
    return str(path)


def _card_file(scratch) -> str:
    path = scratch / f"ok-card-{next(_n)}.toml"
    path.write_text(to_toml(card_with_suite(base_suite())))
    return str(path)


def _valid_args(command: str, scratch, run_id: str) -> list[str]:
    """Arguments that make `command` valid (so that the one break is the only problem)."""
    return {"run": [_suite_file(scratch)], "show": [run_id], "plot": [run_id], "lens": [run_id, "--probe", "weights"],
            "check": [_card_file(scratch)]}.get(command, [])


def _run_id(store) -> str:
    from layerlab.arena.store import Store

    s = Store(store)
    try:
        return s.runs()[0]["run_id"]
    finally:
        s.close()


@settings(max_examples=examples(25))
@given(word=plain.filter(lambda w: w not in COMMANDS))
@example(word="[[run]]")
def test_unknown_commands(store, word):
    refuse([word], store, mentions=(word,))


@settings(max_examples=examples(40))
@given(command=st.sampled_from(COMMANDS), word=words, data=st.data())
def test_unknown_flags(scratch, store, command, word, data):
    flag = data.draw(st.sampled_from([f"--{word}", f"-{word}"]).filter(
        lambda f: f not in _options(command) and f.split("=")[0] not in _options(command) and f != "-"
        and f[:2] not in _options(command)  # -o0 is -o 0
        and not f[1:].lstrip("-").replace(".", "").isdigit()))
    args = [command, *_valid_args(command, scratch, _run_id(store)), flag]
    if command in STORE_COMMANDS:
        args += ["--store", str(store)]
    refuse(args, store, mentions=(flag,))


# (command line before the value, the option, valid values or None for a free text validated later)
CHOICES = [(["export"], "--format", ("csv", "json")), (["cards"], "--format", ("table", "json")),
           (["verdicts"], "--format", ("table", "json")), (["papers"], "--format", ("table", "json")),
           (["blocks"], "--kind", ("mixer", "channel", "norm", "activation")),
           (["papers"], "--kind", ("block", "training", "theory", "instrument", "efficiency")),
           (["cards"], "--kind", ("comparative", "absolute", "closed-form", "scaling", "qualitative")),
           (["check", "--all"], "--kind", ("comparative", "absolute", "closed-form", "scaling", "qualitative")),
           (["papers"], "--status", ("checked", "implemented", "partial", "missing")),
           (["runs"], "--status", ("pending", "running", "done", "diverged", "interrupted", "failed")),
           (["runs"], "--suite", ("fz-base",)), (["board"], "--suite", ("fz-base",)),
           (["board"], "--baseline", ("mlp",))]


@settings(max_examples=examples(40))
@given(case=st.sampled_from(CHOICES), value=plain)
def test_values_outside_the_choices(store, case, value):
    head, option, valid = case
    if value in valid:
        return
    refuse([*head, option, value, *(["--store", str(store)] if head[0] in STORE_COMMANDS else [])], store,
           mentions=(value,))


@settings(max_examples=examples(30))
@given(command=st.sampled_from(["run", "check", "lens"]), data=st.data())
def test_bad_numbers_and_devices(scratch, store, command, data):
    option = data.draw(st.sampled_from(["--workers", "--device"] if command != "lens" else ["--batch-size", "--device"]))
    if option == "--device":
        value = data.draw(st.one_of(plain.filter(lambda v: v not in ("cpu", "auto")),
                                    st.sampled_from(["cuda:99", "cuda:-1", "mps", "cpu:x", "gpu"])))
        try:
            from layerlab.cli import _check_device

            _check_device(value)
            return  # a device this machine has (cuda on a GPU machine): not bad input here
        except Exception:  # noqa: BLE001
            pass
    else:
        value = data.draw(st.one_of(st.integers(-10**6, 0).map(str), plain.filter(lambda v: not v.isdigit())))
    args = [command, *_valid_args(command, scratch, _run_id(store)), option, value, "--store", str(store)]
    refuse(args, store, mentions=(value,) if not value.lstrip("-").isdigit() else (option,))


def test_missing_arguments(store):
    for argv in ([], ["show"], ["plot"], ["lens"], ["run"], ["export", "--format"], ["show", "--store"]):
        refuse(argv, store, mentions=("layerlab",))
    refuse(["check", "--store", str(store)], store, mentions=("give card ids",))
    refuse(["lens", "abc", "--store", str(store)], store, mentions=("--probe",))


@settings(max_examples=examples(40))
@given(command=st.sampled_from(["show", "plot", "lens"]), kind=st.sampled_from(["hex", "text", "foreign", "none"]),
       data=st.data())
def test_missing_malformed_and_foreign_run_ids(scratch, store, foreign_run_id, command, kind, data):
    existing = _run_id(store)
    if kind == "hex":
        run_id = data.draw(st.text("0123456789abcdef", min_size=1, max_size=20).filter(
            lambda r: not existing.startswith(r)))
    elif kind == "text":
        run_id = data.draw(plain.filter(lambda r: not all(c in "0123456789abcdef" for c in r)))
    else:
        run_id = foreign_run_id
    target = scratch / f"never-{next(_n)}" if kind == "none" else store
    extra = ["--probe", "weights"] if command == "lens" else []
    refuse([command, run_id, *extra, "--store", str(target)], target, mentions=(run_id,))


def _not_a_store(scratch, kind: str, junk: bytes):
    base = scratch / f"bad-{next(_n)}"
    if kind == "file":
        base.write_bytes(junk)
        return base
    if kind == "under a file":
        base.write_bytes(junk)
        return base / "store"
    if kind == "junk database":
        base.mkdir()
        (base / "store.sqlite").write_bytes(junk)
        return base
    if kind == "database is a folder":
        (base / "store.sqlite").mkdir(parents=True)
        return base
    return scratch / ("x" * 300)  # a name too long for the file system


@settings(max_examples=examples(40))
@given(command=st.sampled_from(STORE_COMMANDS),
       kind=st.sampled_from(["file", "under a file", "junk database", "database is a folder", "too long"]),
       junk=st.binary(min_size=16, max_size=256).filter(lambda b: not b.startswith(b"SQLite format 3")))
def test_store_paths_that_are_not_stores(scratch, store, command, kind, junk):
    target = _not_a_store(scratch, kind, junk)
    args = [command, *_valid_args(command, scratch, _run_id(store)), "--store", str(target)]

    def state():  # the thing that is not a store, byte for byte
        if kind == "file":
            return target.read_bytes()
        if kind == "under a file":
            return target.parent.read_bytes()
        if kind in ("junk database", "database is a folder"):
            db = target / "store.sqlite"
            return sorted(p.name for p in target.iterdir()), db.read_bytes() if db.is_file() else list(db.iterdir())
        return None

    before = state()
    refuse(args, store, mentions=(str(target),))
    assert state() == before


@settings(max_examples=examples(8))
@given(query=words.map(lambda w: f"qqxj{w}"))
def test_paper_queries_that_match_nothing(store, query):
    refuse(["papers", query, "--store", str(store)], store, mentions=(query,))


@settings(max_examples=examples(20))
@given(option=st.one_of(plain.filter(lambda o: "=" not in o), words.map(lambda w: f"weights.{w}=1"),
                        words.map(lambda w: f".{w}=1"), words.map(lambda w: f"{w}.=1"), st.just("weights.k="),
                        st.just("0..=1")))
def test_malformed_probe_options(store, option):
    import inspect

    from layerlab.lens.probes import PROBES

    opt = option.partition("=")[0].partition(".")[2]
    if option.startswith("weights.") and opt in list(inspect.signature(PROBES["weights"]).parameters)[1:]:
        return
    refuse(["lens", _run_id(store), "--probe", "weights", "--option", option, "--store", str(store)], store,
           mentions=(option,) if not option.startswith("weights.") or option.endswith("=") else (opt,))


def test_outputs_that_cannot_be_written(scratch, store):
    rid = _run_id(store)
    folder = scratch / f"out-{next(_n)}"
    folder.mkdir()
    a_file = scratch / f"a-file-{next(_n)}.html"
    a_file.write_text("keep")
    for argv, shown in ((["export", "-o", str(folder)], str(folder)),
                        (["export", "-o", str(folder / "no" / "x.csv")], str(folder / "no")),
                        (["plot", rid, "-o", str(folder / "curve.txt")], "curve.txt"),
                        (["plot", rid, "-o", str(folder / "no" / "c.png")], str(folder / "no")),
                        (["report", "-o", str(folder)], str(folder)),
                        (["report", "-o", str(a_file / "sub" / "r.html")], str(a_file))):
        refuse([*argv, "--store", str(store)], store, mentions=(shown,))
    assert list(folder.iterdir()) == [] and a_file.read_text() == "keep"


def test_the_valid_commands_still_work(scratch, store):
    """The same commands with good input do not refuse (so the refusals above are the breaks')."""
    rid = _run_id(store)
    for argv in (["runs"], ["show", rid[:6]], ["board"], ["export"], ["verdicts"], ["papers", "--format", "json"]):
        got = cli([*argv, "--store", str(store)])
        assert got.code == 0 and got.err == "", str(got)
    got = cli(["cards", "--format", "json"])
    assert got.code == 0, str(got)
