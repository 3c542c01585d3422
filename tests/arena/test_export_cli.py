"""`layerlab export`: which flags go with which format, and --suite for csv and json (no training here)."""
from __future__ import annotations

import csv
import io
import json

import pytest

from layerlab.arena.store import Store
from layerlab.cli import main
from layerlab.spec import RunSpec, TaskSpec, TrainSpec


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "store")
    for seed, suite in ((0, "a"), (1, "b")):
        st.add_run(RunSpec(task=TaskSpec("digits"), train=TrainSpec(steps=5), seed=seed), suite=suite,
                   labels={"task": "digits", "model": "m"})
    st.close()
    return str(tmp_path / "store")


@pytest.mark.parametrize("argv, said", [
    (["--format", "csv", "--to", "x"], "--to is for --format mlflow or tensorboard; --format csv writes to --output"),
    (["--format", "json", "--experiment", "e"], "--experiment is for --format mlflow or tensorboard"),
    (["--no-plots"], "--no-plots is for --format mlflow or tensorboard; --format json"),
    (["--format", "mlflow"], "--format mlflow needs --to: a directory (an MLflow file store"),
    (["--format", "tensorboard"], "--format tensorboard needs --to: a log directory"),
    (["--format", "mlflow", "--to", "x", "-o", "f.json"], "--output is for --format csv or json"),
    (["--format", "tensorboard", "--to", "x", "--experiment", "e"], "--experiment is for --format mlflow"),
    (["--format", "tensorboard", "--to", "x", "--no-plots"], "--no-plots is for --format mlflow"),
    (["--format", "json", "--suite", "c"], "unknown suite in the store 'c'"),
    (["--format", "parquet"], "unknown value for --format 'parquet'"),
])
def test_flags_that_do_not_fit_the_format_are_refused(store, tmp_path, monkeypatch, capsys, argv, said):
    monkeypatch.chdir(tmp_path)
    assert main(["export", *argv, "--store", store]) == 2
    assert said in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing written


def test_mlflow_and_tensorboard_need_a_store(tmp_path, capsys):
    for fmt in ("mlflow", "tensorboard"):
        assert main(["export", "--format", fmt, "--to", str(tmp_path / "out"), "--store", str(tmp_path / "none")]) == 2
        assert "there is no store at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not (tmp_path / "out").exists()


def test_json_and_csv_unchanged_and_filtered_by_suite(store, capsys):
    assert main(["export", "--store", store]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["suites"][0] for r in rows) == ["a", "b"] and {r["spec"]["seed"] for r in rows} == {0, 1}
    assert main(["export", "--suite", "b", "--store", store]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["suites"] == ["b"] and row["spec"]["seed"] == 1
    assert main(["export", "--format", "csv", "--suite", "a", "--store", store]) == 0
    (line,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert line["spec.seed"] == "0" and line["suites"] == '["a"]'
