import csv
import json

import pytest

from layerlab.cli import main

from .arena.conftest import TINY_SUITE


@pytest.fixture
def suite_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_SUITE.replace("steps = 40", "steps = 10").replace("seeds = [0, 1]", "seeds = [0]"))
    return p


def test_blocks_lists_every_kind(capsys):
    assert main(["blocks"]) == 0
    out = capsys.readouterr().out
    for name in ("attention", "mlp", "swiglu", "rmsnorm", "layernorm"):
        assert name in out
    assert "1706.03762" in out  # the attention paper's arXiv id


def test_run_board_export(tmp_path, suite_file, capsys):
    store = str(tmp_path / "runs")
    assert main(["run", str(suite_file), "--store", store]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "test accuracy" in out and "± " not in out.split("digits")[0]
    assert main(["board", "--suite", "tiny", "--store", store]) == 0
    assert "parity" in capsys.readouterr().out

    csv_path = tmp_path / "runs.csv"
    assert main(["export", "--format", "csv", "-o", str(csv_path), "--store", store]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 5
    assert {"run_id", "spec.task.name", "results.test.accuracy", "git_revision", "versions.torch"} <= set(rows[0])

    assert main(["export", "--format", "json", "--store", store]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 5 and all(r["status"] == "done" for r in data)
    assert all("test" in r["results"] and r["suites"] == ["tiny"] for r in data)

    rid = data[0]["run_id"]
    png = tmp_path / "curve.png"
    assert main(["plot", rid[:8], "-o", str(png), "--store", store]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["show", rid, "--store", store]) == 0
    assert rid in capsys.readouterr().out


def said(capsys) -> str:
    """What the command printed, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    assert main(["run", "quik", "--store", str(tmp_path)]) == 2
    assert "did you mean 'quick'" in said(capsys)
    assert main(["board", "--store", str(tmp_path)]) == 1
    assert "no suite runs yet" in said(capsys)
    assert main(["board", "--suite", "nothing", "--store", str(tmp_path)]) == 2
    assert "unknown suite in the store 'nothing'" in said(capsys)
    assert main(["show", "deadbeef", "--store", str(tmp_path)]) == 2
    assert "no run 'deadbeef'" in said(capsys)


def test_probes_in_a_suite_then_lens_and_plot(tmp_path, capsys):
    suite = tmp_path / "probed.toml"
    suite.write_text('name = "probed"\nseeds = [0]\nlr = [3e-3]\n[train]\nsteps = 12\nbatch_size = 32\n'
                     'eval_every = 6\n[probes]\nnames = ["weights"]\npoints = 3\n[[tasks]]\nname = "digits"\n'
                     '[[models]]\nlabel = "mlp"\nbackbone = "classifier"\nd_model = 16\nn_layers = 1\n')
    store = str(tmp_path / "runs")
    assert main(["run", str(suite), "--store", store]) == 0
    from layerlab.arena.store import Store

    s = Store(store)
    rid = s.runs()[0]["run_id"]
    steps = sorted({m["step"] for m in s.metrics(rid, split="probe", name="weights/norm")})
    assert steps == s.spec(rid).probes.steps(s.spec(rid).train.steps) and steps[0] == 0
    capsys.readouterr()
    assert main(["lens", rid[:10], "--probe", "weights", "--option", "weights.per_parameter=false", "--store", store]) == 0
    out = said(capsys)
    assert "weights/norm" in out and "head.weight" not in out
    svg = tmp_path / "run.svg"
    assert main(["plot", rid, "-o", str(svg), "--store", store]) == 0
    assert "probe: weights" in svg.read_text()
    capsys.readouterr()
    assert main(["lens", rid, "--probe", "weihgts", "--store", store]) == 2
    assert "unknown probe 'weihgts'; did you mean 'weights'" in said(capsys)
