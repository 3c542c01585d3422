"""What every fuzz test shares: the CLI run in-process as a user would see it, a store's contents
byte for byte, TOML written from plain data, and the one check every bad input must pass.

A refusal is: exit status 2; standard error is exactly one line ``error: ...`` naming the problem
(the offending text verbatim); nothing on standard output; no traceback; the store (when there is
one) has the same files with the same bytes and the same rows; a store path that did not exist still
does not.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerlab.cli import main

# The rows a refusal must not add (or change): every table of the store.
TABLES = ("runs", "suite_runs", "metrics", "results", "events", "artifacts", "verdicts")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def cli(argv: list[str]) -> Outcome:
    """``layerlab ARGV`` in this process: exit status, standard output and standard error as printed.

    Warnings are printed to the captured standard error, as a user's terminal would show them;
    LAYERLAB_DEBUG is unset (a bug must end in one line, as users see it)."""
    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None):
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    debug = os.environ.pop("LAYERLAB_DEBUG", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            try:
                code = main(argv)
            except SystemExit as e:  # main never exits: it returns a status
                code = f"SystemExit({e.code!r})"
    finally:
        if debug is not None:
            os.environ["LAYERLAB_DEBUG"] = debug
    return Outcome(code, out.getvalue(), err.getvalue())


# ---- a store, byte for byte ---------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, Any]:
    """Every file under `root` (bytes) and the row count of every table; {'exists': False} if absent."""
    if not root.exists():
        return {"exists": False}
    rows = {}
    db = root / "store.sqlite"
    if db.is_file():
        con = sqlite3.connect(db)  # the last connection to close removes -wal and -shm again
        try:
            rows = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            con.close()
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {"exists": True, "rows": rows, "files": files}


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    if before.get("exists") != after.get("exists"):
        return f"store existed before: {before.get('exists')}, after: {after.get('exists')}"
    if before.get("rows") != after.get("rows"):
        return f"rows before {before.get('rows')}, after {after.get('rows')}"
    fb, fa = before.get("files", {}), after.get("files", {})
    changed = sorted(k for k in set(fb) | set(fa) if fb.get(k) != fa.get(k))
    return f"files changed: {changed}"


def assert_refused(outcome: Outcome, before: dict[str, Any], after: dict[str, Any], *,
                   mentions: tuple[str, ...] = ()) -> str:
    """The refusal contract (module docstring); returns the error line."""
    assert "Traceback" not in outcome.out + outcome.err, str(outcome)
    assert outcome.code == 2, str(outcome)
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and outcome.err.endswith("\n"), f"not one line on stderr:\n{outcome}"
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 10, str(outcome)
    assert "internal error" not in line, str(outcome)
    for text in mentions:
        assert text in line, f"the error does not show {text!r} verbatim:\n{outcome}"
    assert outcome.out == "", f"a refusal printed on standard output:\n{outcome}"
    assert before == after, describe_change(before, after) + f"\n{outcome}"
    return line


# Every distinct bad input tried in this session (reported at the end of the run by conftest.py).
TRIED: set[tuple] = set()


def record(*key: Any) -> None:
    TRIED.add(key)


def _identity(argv: list[str]) -> tuple:
    """An input as the user gave it: files by their content, generated path names without their counters."""
    out = []
    for a in argv:
        p = Path(a)
        try:
            is_file = p.is_file()
        except OSError:
            is_file = False
        if is_file:
            out.append(("file", hashlib.sha256(p.read_bytes()).hexdigest()))
        else:
            out.append(re.sub(r"(pytest-\d+|[a-z-]+\d*-\d+)", "#", a))
    return ("cli", *out)


def refuse(argv: list[str], store: Path, *, mentions: tuple[str, ...] = ()) -> str:
    """Run ``layerlab ARGV``, which must refuse without touching `store`; returns the error line."""
    record(*_identity(argv))
    before = snapshot(store)
    outcome = cli(argv)
    return assert_refused(outcome, before, snapshot(store), mentions=mentions)


# ---- TOML from plain data -----------------------------------------------------------------------
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML's basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(data: dict[str, Any]) -> str:
    """A TOML document of top-level ``key = value`` lines (tables inline), which tomllib reads back as `data`."""
    return "".join(f"{json.dumps(str(k))} = {toml_value(v)}\n" for k, v in data.items())
