"""Task parameters: any mix of values a user might write (out of range, wrong types, unknown keys, odd
corpus paths). ``build_task`` either refuses with a one-line ConfigError (or DataError) naming the
problem, or gives a task that works: every split can be drawn, a training batch too. A task that is
built and then fails when it is used is a bug: the suite would pass validation and its runs would
fail after they were written to the store."""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from layerlab.errors import LayerlabError
from layerlab.tasks import build_task, get_task_class, task_names

from .conftest import examples
from .harness import record, refuse, to_toml
from .inputs import base_suite, fits, user_text, values

STRINGS = {"op": ["+", "-", "*", "/", "x"], "encoding": ["tokens", "onehot", "bits"],
           "group": ["S2", "S3", "S4", "S5", "A3", "A4", "A5", "S6", "Z3", "s3"]}


CORPORA = ("tiny.txt", "empty.txt", "one.txt", "binary.txt", ".", "none.txt")


@pytest.fixture(scope="session")
def corpora(tmp_path_factory):
    """Where a text task's `path` (one of CORPORA) points: a tiny corpus, an empty file, one repeated
    character, bytes that are not UTF-8, a folder, a missing file."""
    d = tmp_path_factory.mktemp("corpora")
    (d / "tiny.txt").write_text("to be or not to be, that is the question. " * 40)
    (d / "empty.txt").write_text("")
    (d / "one.txt").write_text("a" * 500)
    (d / "binary.txt").write_bytes(bytes(range(256)) * 4)
    return d


def _value(hint, key: str):
    if key == "path":
        return st.sampled_from(CORPORA)
    if key in STRINGS:
        return st.one_of(st.sampled_from(STRINGS[key]), user_text)
    if hint is int:
        return st.one_of(st.integers(-3, 40), st.sampled_from([0, 1, 2]))
    if hint is float:
        return st.one_of(st.floats(-1.0, 2.0), st.sampled_from([0.0, 1.0, 0.5, math.nan, math.inf, -math.inf]))
    args = typing.get_args(hint)
    if args and args[0] is int:
        return st.lists(st.integers(-2, 5), max_size=3)
    if args and args[0] is float:
        return st.lists(st.one_of(st.floats(-1.0, 4.0), st.just(math.nan)), max_size=4)
    return values


@st.composite
def task_params(draw):
    name = draw(st.sampled_from(task_names()))
    cls = get_task_class(name)
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    params = {}
    for key in draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))):
        params[key] = draw(_value(hints[key], key))
    mentions = ()
    break_ = draw(st.sampled_from(["none", "none", "unknown key", "wrong type"]))
    if break_ == "unknown key":
        key = draw(user_text.filter(lambda k: k not in fields))
        params[key] = 1
        mentions = (key,)
    elif break_ == "wrong type" and fields:
        key = draw(st.sampled_from(fields))
        params[key] = draw(values.filter(lambda v: not fits(v, hints[key])))
        mentions = (key,)
    return name, params, mentions


def _small(name: str, params: dict) -> bool:
    """Keep every example cheap: no huge evaluation sets."""
    def at_most(key, most):
        v = params.get(key, 1)
        return not isinstance(v, (int, float)) or v <= most

    return at_most("n_eval", 40) and at_most("eval_tokens", 4000)


@settings(max_examples=examples(150))
@given(case=task_params())
@example(case=("parity", {"length": 1}, ()))  # found by this test: the splits could not be drawn
@example(case=("text", {"split": [math.nan, 0.0, math.nan]}, ()))  # found: NaN passed the split check
@example(case=("linear_teacher", {"noise": math.inf}, ()))  # found: infinite noise accepted
@example(case=("linear_teacher", {"singular_values": [math.inf]}, ()))
def test_task_parameters_are_refused_cleanly_or_work(corpora, case):
    name, params, mentions = case
    params = dict(params)
    if isinstance(params.get("path"), str):
        params["path"] = str(corpora / params["path"])
    if name == "text":
        params.setdefault("path", str(corpora / "tiny.txt"))
        params.setdefault("eval_tokens", 256)
        params.setdefault("length", 16)
    else:
        params.setdefault("n_eval", 16) if "n_eval" in [f.name for f in dataclasses.fields(get_task_class(name))] else None
    if not _small(name, params):
        return
    try:
        task = build_task(name, **params)
    except LayerlabError as e:
        record("task", name, repr(sorted(params.items())))
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        for text in mentions:
            assert text in msg, (text, msg)
        if not mentions:
            assert name in msg or any(k in msg for k in params), msg
        return
    assert not mentions, f"task {name!r} accepted {params!r}"
    gen = torch.Generator().manual_seed(0)
    for split in task.eval_splits:
        batch = task.eval_set(split)
        assert len(batch) > 0, (name, params, split)
        for t in (batch.inputs, batch.targets):  # a NaN parameter must not reach the data
            assert torch.isfinite(t.double()).all(), (name, params, split)
    task.check_batch_size(4)
    assert len(task.train_batch(4, gen)) > 0


@settings(max_examples=examples(8))
@given(length=st.integers(-3, 3), n_eval=st.integers(-2, 3000))
def test_impossible_task_parameters_in_a_suite_are_refused_before_anything_is_written(scratch, store, length, n_eval):
    """Through the CLI: a parity task too short for its evaluation sets (or with a non-positive length or
    n_eval) is refused when the suite is expanded, not when its runs fail."""
    doc = base_suite()
    doc["tasks"][1]["params"] = {"length": length, "n_eval": n_eval}
    try:
        build_task("parity", length=length, n_eval=n_eval).eval_set("val")
        return  # a parity task that works
    except LayerlabError:
        pass
    path = scratch / f"parity-{length}-{n_eval}.toml"
    path.write_text(to_toml(doc))
    refuse(["run", str(path), "--store", str(store)], store, mentions=("parity",))
