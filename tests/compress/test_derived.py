"""Derived runs (`layerlab compress`): deterministic ids linked to the parent, results equal to the
technique applied by hand and evaluated as the Trainer does, the calibration batch from the training
split, kills and reruns, failures recorded, bad input refused before the store changes; the CLI,
`runs`/`show`/`export`, the quality-vs-saving plot and the report section.

The techniques here are toys registered by a fixture (and removed after), so these tests do not
depend on the techniques of issue 18."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from layerlab.arena.execute import execute_run
from layerlab.arena.inspect_run import checkpoint_model
from layerlab.arena.store import SCHEMA_VERSION, Store
from layerlab.cli import main
from layerlab.compress import TECHNIQUES, register_technique
from layerlab.compress.derived import compress_run, derived_id, plan_compress
from layerlab.errors import ConfigError
from layerlab.registry import Paper
from layerlab.spec import ModelSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task

TOY_PAPER = Paper("A toy technique for tests", 2024)
SEEN_CALIBRATION: list = []  # what the toy technique was given, for the calibration test


def toy_zero_smallest(model: nn.Module, level: float, ctx, *, bias: bool = False) -> nn.Module:
    """Zero the round(level n) entries of smallest |w| of every Linear weight (and bias with ``bias``)."""
    SEEN_CALIBRATION.append(ctx.calibration)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, nn.Linear):
                for p in [m.weight] + ([m.bias] if bias and m.bias is not None else []):
                    k = round(level * p.numel())
                    if k:
                        p.view(-1)[p.abs().view(-1).argsort(stable=True)[:k]] = 0.0
    return out


def toy_fails_above_half(model: nn.Module, level: float, ctx) -> nn.Module:
    if level > 0.5:
        raise ConfigError("toy cannot go above 0.5")
    return copy.deepcopy(model)


def toy_in_place_above_half(model: nn.Module, level: float, ctx) -> nn.Module:
    """Breaks the rule above 0.5: zeroes the model it was given and returns it."""
    if level > 0.5:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model
    return copy.deepcopy(model)


@pytest.fixture
def toys():
    names = {"toy_zero_smallest": (toy_zero_smallest, (0.5, 0.9)), "toy_fails": (toy_fails_above_half, ()),
             "toy_in_place": (toy_in_place_above_half, ())}
    for name, (fn, levels) in names.items():
        register_technique(name, paper=TOY_PAPER, level_kind="sparsity", levels=levels)(fn)
    yield
    for name in names:
        TECHNIQUES._entries.pop(name, None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A store holding one finished digits run (an MLP classifier, 10 steps)."""
    root = tmp_path_factory.mktemp("parent")
    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   train=TrainSpec(steps=10, batch_size=32, eval_every=5, log_every=5), seed=0)
    store = Store(root)
    rid = store.add_run(spec)
    store.close()
    assert execute_run(root, rid) == "done"
    return root, rid


@pytest.fixture
def parent(trained, tmp_path) -> tuple[Store, str]:
    """A fresh copy of the trained store for one test."""
    root = tmp_path / "store"
    shutil.copytree(trained[0], root)
    return Store(root), trained[1]


def _by_level(store: Store, parent_id: str) -> dict[float, dict]:
    return {r["level"]: r for r in store.derived_runs(parent_id)}


def test_derived_runs_are_linked_deterministic_and_measured(toys, parent):
    store, pid = parent
    outcomes = compress_run(store, pid, "toy_zero_smallest", [0.0, 0.5, 0.9], repeats=3)
    assert [o.status for o in outcomes] == ["done"] * 3
    ids = [o.run_id for o in outcomes]
    assert ids == [derived_id(pid, "toy_zero_smallest", lv, {"bias": False}, 0, 256) for lv in (0.0, 0.5, 0.9)]
    assert len(set(ids)) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    # the id follows the seed and the options that differ from the defaults, not default ones
    assert derived_id(pid, "toy_zero_smallest", 0.5, {}, 0, 256) == ids[1]
    assert derived_id(pid, "toy_zero_smallest", 0.5, {"bias": True}, 0, 256) != ids[1]
    assert derived_id(pid, "toy_zero_smallest", 0.5, {}, 1, 256) != ids[1]

    rows = _by_level(store, pid)
    d = store.derivation(ids[1])
    assert d == {"parent_id": pid, "technique": "toy_zero_smallest", "level": 0.5, "level_kind": "sparsity",
                 "options": {"bias": False}, "seed": 0, "calibration": 256, "paper": TOY_PAPER.cite()}
    row = store.run(ids[1])
    assert (row["status"], row["attempts"], row["step"], row["total_steps"]) == ("done", 1, 1, 1)
    assert row["git_revision"] and json.loads(row["versions_json"])["torch"] and row["data_checksum"]
    assert store.spec(ids[1]) == store.spec(pid)  # the parent's task and model
    assert rows[0.9]["run_id"] == ids[2] and store.derivation(pid) is None

    # level 0 changes nothing: the parent's own final evaluation, exactly
    for split in ("val", "test"):
        assert store.results(ids[0])[split] == store.results(pid)[split]
    # the results are the technique applied by hand, evaluated as the Trainer's final evaluation does
    _, task, model = checkpoint_model(store, pid)
    by_hand = toy_zero_smallest(model.eval(), 0.5, type("C", (), {"calibration": None})())
    for split in task.eval_splits:
        assert store.results(ids[1])[split] == task.evaluate(by_hand, split, batch_size=256)
    savings = store.results(ids[1])["savings"]
    dense_nz = sum(int((p != 0).sum()) for p in model.state_dict().values())
    nz = sum(int((p != 0).sum()) for p in by_hand.state_dict().values())
    assert (savings["dense_nonzero_params"], savings["nonzero_params"]) == (dense_nz, nz) and nz < dense_nz
    assert savings["nonzero_ratio"] == nz / dense_nz and savings["bits_ratio"] == 1.0
    assert savings["time_ratio"] > 0 and savings["memory_ratio"] == 1.0
    assert row["n_params"] == nz

    # the same compression again: skipped, nothing recomputed
    before = {i: store.run(i)["finished"] for i in ids}
    again = compress_run(store, pid, "toy_zero_smallest", [0.0, 0.5, 0.9], repeats=3)
    assert [o.status for o in again] == ["skipped"] * 3 and [o.run_id for o in again] == ids
    assert {i: store.run(i)["finished"] for i in ids} == before
    assert all(store.run(i)["attempts"] == 1 for i in ids)


def test_calibration_batch_is_from_the_training_split_and_seeded(toys, parent):
    store, pid = parent
    SEEN_CALIBRATION.clear()
    compress_run(store, pid, "toy_zero_smallest", [0.3, 0.6], calibration=40, seed=5, repeats=1)
    compress_run(store, pid, "toy_zero_smallest", [0.3], calibration=40, seed=6, repeats=1)
    a, b, c = SEEN_CALIBRATION
    task = build_task("digits")
    train = task.train_batch(0, torch.Generator()).inputs  # the whole training split
    assert a.inputs.shape == (40, 64)
    assert all(bool((train == x).all(dim=1).any()) for x in a.inputs)  # every example a training example
    assert torch.equal(a.inputs, b.inputs)  # the levels of one sweep see the same batch
    assert not torch.equal(a.inputs, c.inputs)  # another seed, another batch
    assert not any(bool((task.eval_set(s).inputs == x).all(dim=1).any()) and not bool((train == x).all(dim=1).any())
                   for s in ("val", "test") for x in a.inputs)


def test_unfinished_runs_are_redone_and_failures_recorded(toys, parent):
    store, pid = parent
    first = compress_run(store, pid, "toy_zero_smallest", [0.5, 0.9], repeats=1)
    store.mark_running(first[1].run_id, {})  # as a kill leaves it: running, its results not yet its own
    done_at = store.run(first[0].run_id)["finished"]
    again = compress_run(store, pid, "toy_zero_smallest", [0.5, 0.9], repeats=1)
    assert [o.status for o in again] == ["skipped", "done"]
    assert store.run(first[0].run_id)["finished"] == done_at
    assert store.run(first[1].run_id)["attempts"] == 3  # done, marked running, done again
    assert any("compressing again" in e for e in store.events(first[1].run_id))

    fails = compress_run(store, pid, "toy_fails", [0.25, 0.75], repeats=1)
    assert [o.status for o in fails] == ["done", "failed"] and "toy cannot go above 0.5" in fails[1].error
    row = store.run(fails[1].run_id)
    assert row["status"] == "failed" and "toy cannot go above 0.5" in row["error"]
    retry = compress_run(store, pid, "toy_fails", [0.25, 0.75], repeats=1)
    assert [o.status for o in retry] == ["skipped", "failed"] and store.run(fails[1].run_id)["attempts"] == 2

    # a technique that modifies its input fails its level, and the next level starts from the checkpoint
    broken = compress_run(store, pid, "toy_in_place", [0.9, 0.0], repeats=1)
    assert [o.status for o in broken] == ["failed", "done"]
    assert "modified the model it was given" in broken[0].error
    assert store.results(broken[1].run_id)["test"] == store.results(pid)["test"]


def test_bad_input_is_refused_before_anything_is_written(toys, parent):
    store, pid = parent
    n = len(store.runs())
    cases = [(("toy_zero_smalest", [0.5]), {}, "did you mean 'toy_zero_smallest'"),
             (("toy_zero_smallest", [1.5]), {}, r"in \[0, 1\]"),
             (("toy_zero_smallest", []), {}, "no level given"),
             (("toy_zero_smallest", [0.5]), {"options": {"colour": 1}}, r"no option\(s\) \['colour'\]"),
             (("toy_zero_smallest", [0.5]), {"calibration": 0}, "--calibration must be >= 1"),
             (("toy_zero_smallest", [0.5]), {"seed": -1}, "--seed must be"),
             (("toy_zero_smallest", [float("nan")]), {}, "not a finite number")]
    for args, kw, message in cases:
        with pytest.raises(ConfigError, match=message):
            plan_compress(store, pid, *args, **kw)
    pending = store.add_run(RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=8),
                                    train=TrainSpec(steps=3)))
    with pytest.raises(ConfigError, match="is pending, not done"):
        plan_compress(store, pending, "toy_zero_smallest", [0.5])
    [o] = compress_run(store, pid, "toy_zero_smallest", [0.5], repeats=1)
    with pytest.raises(ConfigError, match=f"is a derived run .*compress its parent {pid}"):
        plan_compress(store, o.run_id, "toy_zero_smallest", [0.5])
    assert len(store.runs()) == n + 2


def test_an_older_store_gains_the_derived_table_and_keeps_its_runs(parent):
    store, pid = parent
    store.conn.execute("DROP TABLE derived")
    store.conn.execute("PRAGMA user_version = 0")
    store.close()
    reopened = Store(store.root)
    assert reopened.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert reopened.derived_runs() == [] and reopened.run(pid)["status"] == "done"
    assert reopened.results(pid)["test"]


DRIVER = """
import copy, sys, time
from layerlab.cli import main
from layerlab.compress import register_technique
from layerlab.registry import Paper

@register_technique("toy_slow", paper=Paper("A slow toy", 2024), level_kind="sparsity")
def toy_slow(model, level, ctx):
    if level >= 0.5:
        time.sleep(120)  # killed here
    return copy.deepcopy(model)

sys.exit(main(sys.argv[1:]))
"""


def toy_slow(model: nn.Module, level: float, ctx) -> nn.Module:
    """The driver's technique without its sleep: what the rerun in this process applies."""
    return copy.deepcopy(model)


def test_sigkill_mid_sweep_then_rerun(parent, tmp_path):
    store, pid = parent
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    args = ["compress", pid, "--technique", "toy_slow", "--levels", "0.25,0.5,0.75", "--repeats", "1",
            "--store", str(store.root)]
    proc = subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline, killed = time.time() + 120, None
    while time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        rows = _by_level(store, pid)
        if rows.get(0.25, {}).get("status") == "done" and rows.get(0.5, {}).get("status") == "running":
            killed = rows
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            break
    assert killed is not None, "the sweep never reached one level done and the next running"
    assert 0.75 not in killed

    register_technique("toy_slow", paper=Paper("A slow toy", 2024), level_kind="sparsity")(toy_slow)
    try:
        assert main(args) == 0
        planned = plan_compress(store, pid, "toy_slow", [0.25, 0.5, 0.75]).run_ids
    finally:
        TECHNIQUES._entries.pop("toy_slow", None)
    rows = _by_level(store, pid)
    assert [rows[lv]["run_id"] for lv in (0.25, 0.5, 0.75)] == list(planned) and len(store.derived_runs()) == 3
    assert all(r["status"] == "done" and store.results(r["run_id"])["test"] for r in rows.values())
    assert rows[0.25]["finished"] == killed[0.25]["finished"] and rows[0.25]["attempts"] == 1  # kept
    assert rows[0.5]["attempts"] == 2 and any("running before" in e for e in store.events(rows[0.5]["run_id"]))
    assert rows[0.75]["attempts"] == 1


# ---- the command line -------------------------------------------------------------------------
def said(capsys) -> str:
    got = capsys.readouterr()
    return " ".join((got.out + " " + got.err).split())


def test_cli_compress_table_runs_show_export_plot_report(toys, parent, tmp_path, capsys, monkeypatch):
    store, pid = parent
    root = str(store.root)
    assert main(["compress", "--list"]) == 0
    out = said(capsys)
    assert all(name in out for name in TECHNIQUES) and "sparsity" in out and "toy" in out and "(2024)" in out

    assert main(["compress", pid[:8], "--technique", "toy_zero_smallest", "--levels", "0.5,0.9", "--repeats", "2",
                 "--store", root]) == 0
    out = said(capsys)
    ids = [r["run_id"] for r in store.derived_runs(pid)]
    assert len(ids) == 2 and all(i in out for i in ids)
    assert "dense parent" in out and "nonzero params" in out and "accuracy" in out
    assert len(re.findall(r"\(\d[\d.]*×\)", out)) == 2 * 4  # each level: four savings with their ratios
    assert main(["compress", pid, "--technique", "toy_zero_smallest", "--level", "0.9", "--repeats", "2",
                 "--store", root]) == 0
    assert "were done before" in said(capsys) and len(store.derived_runs()) == 2
    # no --level: the technique's own sweep (0.5, 0.9), done before
    assert main(["compress", pid, "--technique", "toy_zero_smallest", "--store", root]) == 0
    assert "2 of 2 level(s) were done before" in said(capsys)

    assert main(["runs", "--store", root]) == 0
    out = said(capsys)
    assert "derived from" in out and out.count(pid) == 3 and out.count("toy_zero_smallest") == 2
    assert main(["show", ids[0], "--store", root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["derived"]["parent_id"] == pid and "savings" in shown["results"]
    assert main(["export", "--format", "json", "--store", root]) == 0
    exported = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert exported[pid]["derived"] is None and exported[ids[1]]["derived"]["level"] == 0.9

    png, svg = tmp_path / "curve.png", tmp_path / "curve.svg"
    assert main(["plot", pid, "--compression", "-o", str(png), "--store", root]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", ids[0], "-o", str(svg), "--store", root]) == 0  # a derived run: its parent's curves
    assert "is derived from run" in said(capsys) and b"<svg" in svg.read_bytes()[:400]

    from layerlab.report import page as report_page

    # the catalogue and the cards are not what is tested here (and take seconds to load)
    monkeypatch.setattr(report_page, "gather", lambda store: {"papers": [], "verdicts": [], "cards": []})
    page = report_page.build_report(store)
    section = page[page.index('<section id="compression">'):]
    section = section[:section.index("</section>")]
    assert "toy_zero_smallest" in section and pid in section and "<svg" in section
    assert 'href="#compression"' in page


def test_cli_bad_input_exits_2_and_leaves_the_store(toys, parent, capsys):
    store, pid = parent
    root = str(store.root)
    n = len(store.runs())
    bad = [(["compress", pid, "--technique", "toy_zero_smalest", "--level", "0.5"], "did you mean 'toy_zero_smallest'"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--level", "2"], "in [0, 1]"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--level", "0.5", "--option", "colour=1"],
            "has no option(s) ['colour']"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--option", "bias"], "write NAME=VALUE"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--level", "0.5", "--levels", "0.1"], "not both"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--levels", "a,b"], "comma-separated numbers"),
           (["compress", pid, "--technique", "toy_fails"], "has no default levels"),
           (["compress", pid, "--list"], "drop RUN_ID"),
           (["compress", pid], "give --technique NAME"),
           (["compress", "--technique", "toy_zero_smallest"], "give RUN_ID"),
           (["compress", "feedbeef", "--technique", "toy_zero_smallest", "--level", "0.5"], "no run 'feedbeef'"),
           (["compress", "not-hex", "--technique", "toy_zero_smallest", "--level", "0.5"], "is not a run id"),
           (["compress", pid, "--technique", "toy_zero_smallest", "--level", "0.5", "--repeats", "0"], "--repeats"),
           (["plot", pid, "--compression"], "has no finished derived runs yet")]
    for argv, message in bad:
        assert main([*argv, "--store", root]) == 2, argv
        assert message in said(capsys), (argv, message)
    assert len(store.runs()) == n
