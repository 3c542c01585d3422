"""`layerlab export --format mlflow`: the runs read back through MLflow's own client, from a local file store."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from layerlab.arena.export_mlflow import TAG_RUN_ID, export_mlflow, metric_key
from layerlab.arena.exports import flatten_spec
from layerlab.cli import main
from layerlab.errors import ConfigError

from .export_helpers import store_copy, trained_run_ids


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The store, exported once (with plots) into a file store; a client reading it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the reader's side: MLflow 3 asks for it on a file store
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient

        root = tmp_path_factory.mktemp("mlflow")
        store = store_copy(root / "store")
        summary = export_mlflow(store, str(root / "mlruns"))
        client = MlflowClient(tracking_uri=(root / "mlruns").resolve().as_uri())
        yield store, summary, client, root
        store.close()


def by_layerlab_id(client, experiment: str = "layerlab") -> dict:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    out = {}
    for r in runs:
        assert r.data.tags[TAG_RUN_ID] not in out, "a layerlab run was exported twice"
        out[r.data.tags[TAG_RUN_ID]] = r
    return out


def test_every_run_once_with_params_and_tags(exported):
    store, summary, client, _ = exported
    runs = by_layerlab_id(client)
    assert set(runs) == {r["run_id"] for r in store.runs()} and len(store.runs()) == 3
    assert sorted(summary.created) == sorted(runs) and not summary.updated and not summary.unchanged
    (trained,) = trained_run_ids(store)
    ml = runs[trained].data
    assert ml.params == flatten_spec(json.loads(store.run(trained)["spec_json"]))
    assert ml.params["optim.lr"] == "0.003" and ml.params["model.d_model"] == "16"
    assert ml.params["probes.names"] == '["weights", "spectra"]' and ml.params["model.channel_options"] == "{}"
    assert {k: ml.tags[k] for k in ("suite", "task", "model", "status")} == {
        "suite": "probed", "task": "digits", "model": "mlp", "status": "done"}
    assert runs[trained].info.status == "FINISHED"
    pending = next(r for r in store.runs() if r["status"] == "pending")["run_id"]
    assert {k: runs[pending].data.tags[k] for k in ("suite", "task", "model", "status")} == {
        "suite": "other", "task": "parity8", "model": "tiny-mlp", "status": "pending"}
    assert runs[pending].info.status == "SCHEDULED" and runs[pending].data.metrics == {}
    derived = runs["d" * 16].data
    assert derived.params["derived.technique"] == "magnitude" and derived.params["derived.level"] == "0.5"
    assert derived.tags["layerlab.parent_run_id"] == trained


def test_metric_histories_equal_the_store(exported):
    store, _, client, _ = exported
    (trained,) = trained_run_ids(store)
    mid = by_layerlab_id(client)[trained].info.run_id
    series: dict[str, list[tuple[int, float]]] = {}
    for m in store.metrics(trained):
        series.setdefault(metric_key(m["split"], m["name"]), []).append((m["step"], m["value"]))
    assert {"train/loss", "val/accuracy", "probe/weights.norm", "probe/spectra.stable_rank_mean"} <= set(series)
    for key, points in series.items():
        got = sorted((h.step, h.value) for h in client.get_metric_history(mid, key))
        assert got == points, key  # same steps, same float64 values
    results = store.results(trained)
    for split in ("test", "val", "train"):
        for name, value in results[split].items():
            hist = client.get_metric_history(mid, metric_key(f"final/{split}", name))
            assert [(h.step, h.value) for h in hist] == [(12, value)], (split, name)
    assert "final/train/probe_time_s.spectra" in client.get_run(mid).data.metrics


def test_artifacts_are_the_probe_arrays_spec_and_plot(exported, tmp_path):
    store, _, client, _ = exported
    (trained,) = trained_run_ids(store)
    mid = by_layerlab_id(client)[trained].info.run_id
    steps = sorted({a["step"] for a in store.artifacts(trained)})
    assert [f.path for f in client.list_artifacts(mid, "probes")] == sorted(f"probes/{s}" for s in steps)
    for a in store.artifacts(trained):
        path = f"probes/{a['step']}/{Path(a['path']).name}"
        local = client.download_artifacts(mid, path, str(tmp_path))
        np.testing.assert_array_equal(np.load(local), store.load_artifact(trained, a["step"], a["name"]))
    spec = client.download_artifacts(mid, "spec.json", str(tmp_path))
    assert json.loads(Path(spec).read_text()) == json.loads(store.run(trained)["spec_json"])
    png = client.download_artifacts(mid, "plots/curves.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reexport_skips_unchanged_and_updates_grown_runs_without_duplicates(exported, monkeypatch):
    store, _, client, root = exported
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    (trained,) = trained_run_ids(store)
    again = export_mlflow(store, str(root / "mlruns"), plots=False)
    assert sorted(again.unchanged) == sorted(r["run_id"] for r in store.runs()) and not again.created + again.updated
    store.write_metrics(trained, [(13, "val", "accuracy", 0.75), (13, "train", "loss", 0.5)], step=13)
    grown = export_mlflow(store, str(root / "mlruns"), plots=False)
    assert grown.updated == [trained] and not grown.created and len(grown.unchanged) == 2
    runs = by_layerlab_id(client)  # asserts one MLflow run per layerlab run
    assert len(runs) == 3
    mid = runs[trained].info.run_id
    hist = [(h.step, h.value) for h in client.get_metric_history(mid, "val/accuracy")]
    want = [(m["step"], m["value"]) for m in store.metrics(trained, split="val", name="accuracy")]
    assert sorted(hist) == want and want[-1] == (13, 0.75)
    assert len({s for s, _ in hist}) == len(hist)  # no step twice


def test_metric_keys_mlflow_accepts():
    assert metric_key("train", "probe_time_s/spectra") == "train/probe_time_s.spectra"
    assert metric_key("final/test", "accuracy") == "final/test/accuracy"
    assert metric_key("probe", "hessian/λ:max?") == "probe/hessian.λ_max_"
    assert metric_key("probe", "../x") == "probe/...x"


def test_missing_mlflow_says_how_to_install(tmp_path, monkeypatch, capsys):
    from layerlab.arena.store import Store

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"pip install layerlab\[mlflow\]"):
        export_mlflow(store, str(tmp_path / "mlruns"))
    store.close()
    assert main(["export", "--format", "mlflow", "--to", str(tmp_path / "mlruns"), "--store", str(tmp_path / "store")]) == 2
    assert "pip install layerlab[mlflow]" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


def test_cli_exports_one_suite(exported, tmp_path, capsys, monkeypatch):
    store, _, _, _ = exported
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    target = tmp_path / "suite-runs"
    assert main(["export", "--format", "mlflow", "--to", str(target), "--suite", "other", "--experiment", "mine",
                 "--no-plots", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "1 runs: 1 new" in out and f"mlflow ui --backend-store-uri {target.resolve().as_uri()}" in out
    runs = by_layerlab_id(MlflowClient(tracking_uri=target.resolve().as_uri()), "mine")
    assert [r.data.tags["suite"] for r in runs.values()] == ["other"]


def test_bad_targets_are_refused(exported, tmp_path, capsys):
    store, _, _, _ = exported
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for target, said in [(a_file, "it is a file"), (other, "holds other files and no MLflow experiments")]:
        with pytest.raises(ConfigError, match=said):
            export_mlflow(store, str(target))
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert main(["export", "--format", "mlflow", "--to", str(other), "--suite", "nope", "--store", str(store.root)]) == 2
    assert "unknown suite in the store 'nope'" in capsys.readouterr().err
