"""`layerlab export --format tensorboard`: the event files read back with TensorBoard's own event reader."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from layerlab.arena.export_tensorboard import MARKER, export_tensorboard, run_folder_name
from layerlab.arena.exports import runs_to_export
from layerlab.cli import main
from layerlab.errors import ConfigError

from .export_helpers import store_copy, trained_run_ids


def reader(folder):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("tensorboard")
    store = store_copy(root / "store")
    summary = export_tensorboard(store, root / "logs")
    folders = {r.run_id: root / "logs" / run_folder_name(r) for r in runs_to_export(store)}
    yield store, summary, folders, root
    store.close()


def test_one_folder_per_run(exported):
    store, summary, folders, root = exported
    assert sorted(summary.created) == sorted(r["run_id"] for r in store.runs())
    assert sorted(p.name for p in (root / "logs").iterdir()) == sorted(f.name for f in folders.values())
    (trained,) = trained_run_ids(store)
    assert folders[trained].name == f"digits-mlp-lr0.003-seed0-{trained}"
    assert folders["d" * 16].name == f"digits-mlp-magnitude0.5-{'d' * 16}"
    for rid, folder in folders.items():
        assert json.loads((folder / MARKER).read_text())["run_id"] == rid
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1


def test_scalars_equal_the_store(exported):
    store, _, folders, _ = exported
    (trained,) = trained_run_ids(store)
    acc = reader(folders[trained])
    series: dict[str, list[tuple[int, float]]] = {}
    for m in store.metrics(trained):
        series.setdefault(f"{m['split']}/{m['name']}", []).append((m["step"], m["value"]))
    assert {"train/loss", "val/accuracy", "probe/weights/norm", "probe/spectra/stable_rank_mean"} <= set(series)
    results = store.results(trained)
    for split, values in results.items():
        for name, v in values.items():
            series[f"final/{split}/{name}"] = [(12, v)]
    assert set(acc.Tags()["scalars"]) == set(series)
    for tag, points in series.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        # TensorBoard keeps a scalar as float32: exactly the store's value rounded to float32
        assert got == [(s, float(np.float32(v))) for s, v in points], tag


def test_probe_spectra_as_histograms(exported):
    store, _, folders, _ = exported
    (trained,) = trained_run_ids(store)
    acc = reader(folders[trained])
    arrays = store.artifacts(trained)
    assert arrays and all(a["name"].startswith("spectra/esd.") for a in arrays)
    assert set(acc.Tags()["histograms"]) == {f"probe/{a['name']}" for a in arrays}
    for a in arrays:
        values = store.load_artifact(trained, a["step"], a["name"]).astype(np.float64)
        assert values.ndim == 1 and values.size > 1
        (event,) = [e for e in acc.Histograms(f"probe/{a['name']}") if e.step == a["step"]]
        h = event.histogram_value
        assert (h.num, h.min, h.max) == (values.size, values.min(), values.max())
        assert h.sum == pytest.approx(values.sum(), rel=1e-12)
        assert h.sum_squares == pytest.approx(values @ values, rel=1e-12)
        assert sum(h.bucket) == values.size


def test_spec_as_text(exported):
    store, _, folders, _ = exported
    for rid, folder in folders.items():
        acc = reader(folder)
        text = acc.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
        assert json.loads("\n".join(line[4:] for line in text.splitlines())) == json.loads(store.run(rid)["spec_json"])
        about = acc.Tensors("run/text_summary")[0].tensor_proto.string_val[0].decode()
        assert json.loads("\n".join(line[4:] for line in about.splitlines()))["status"] == store.run(rid)["status"]


def test_reexport_skips_unchanged_and_rewrites_grown_runs(exported):
    store, _, folders, root = exported
    (trained,) = trained_run_ids(store)
    again = export_tensorboard(store, root / "logs")
    assert sorted(again.unchanged) == sorted(folders) and not again.created + again.updated
    store.write_metrics(trained, [(13, "val", "accuracy", 0.75)], step=13)
    grown = export_tensorboard(store, root / "logs")
    assert grown.updated == [trained] and len(grown.unchanged) == 2
    assert sorted(p.name for p in (root / "logs").iterdir()) == sorted(f.name for f in folders.values())
    assert len(list(folders[trained].glob("events.out.tfevents.*"))) == 1
    got = [(e.step, e.value) for e in reader(folders[trained]).Scalars("val/accuracy")]
    want = [(m["step"], float(np.float32(m["value"]))) for m in store.metrics(trained, split="val", name="accuracy")]
    assert got == want and want[-1] == (13, 0.75)


def test_missing_tensorboard_says_how_to_install(tmp_path, monkeypatch, capsys):
    from layerlab.arena.store import Store

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now raises ImportError
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"pip install layerlab\[tensorboard\]"):
        export_tensorboard(store, tmp_path / "logs")
    store.close()
    assert main(["export", "--format", "tensorboard", "--to", str(tmp_path / "logs"),
                 "--store", str(tmp_path / "store")]) == 2
    assert "pip install layerlab[tensorboard]" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_cli_exports_one_suite_and_refuses_a_foreign_folder(exported, tmp_path, capsys):
    store, _, folders, _ = exported
    (trained,) = trained_run_ids(store)
    logs = tmp_path / "logs"
    assert main(["export", "--format", "tensorboard", "--to", str(logs), "--suite", "probed",
                 "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "1 runs: 1 new" in out and f"tensorboard --logdir {logs}" in out
    assert [p.name for p in logs.iterdir()] == [folders[trained].name]
    foreign = tmp_path / "foreign" / folders[trained].name
    foreign.mkdir(parents=True)
    with pytest.raises(ConfigError, match="was not written by layerlab"):
        export_tensorboard(store, tmp_path / "foreign", suite="probed")
    assert list(foreign.iterdir()) == []
