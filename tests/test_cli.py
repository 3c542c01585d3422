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
    """What the command printed (standard output, then standard error), with rich's line wrapping undone."""
    got = capsys.readouterr()
    return " ".join((got.out + " " + got.err).split())


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


# ---- errors printed literally; claims commands --------------------------------------------
def test_error_with_brackets_reaches_stderr_intact(monkeypatch, capsys):
    import layerlab.cli as cli
    from layerlab.errors import ConfigError

    def boom(args, console):
        raise ConfigError("suite 'x' has no [[models]]; add [[models]] with [b]label[/b] and [red]mixer[/red]")

    monkeypatch.setattr(cli, "cmd_cards", boom)
    assert main(["cards"]) == 2
    got = capsys.readouterr()
    assert got.err.strip() == ("error: suite 'x' has no [[models]]; add [[models]] with [b]label[/b] and "
                               "[red]mixer[/red]")
    assert got.out == ""


def test_suite_file_without_models_error_is_literal(tmp_path, capsys):
    p = tmp_path / "nomodels.toml"
    p.write_text('name = "nomodels"\n[[tasks]]\nname = "parity"\n')
    code = main(["run", str(p), "--store", str(tmp_path / "runs")])
    got = capsys.readouterr()
    if code == 2:  # refused: the message names the table, brackets intact
        assert "[[models]]" in got.err
    else:  # a default model was supplied (issue 21): it ran
        assert code == 0


CARD = """
paper = "1706.02515"
claim = "a [b]claim[/b] with [[brackets]]"
where = "Table 1"
kind = "comparative"
deviations = "digits, 6 steps"
[suite]
seeds = [0, 1]
lr = [3e-3]
train = { steps = 6, batch_size = 32, eval_every = 3, log_every = 3 }
[[suite.tasks]]
name = "digits"
budget = 3000
[[suite.models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
n_layers = 1
[[suite.models]]
label = "[selu]"
backbone = "classifier"
channel = "mlp"
channel_options = { activation = "selu" }
n_layers = 1
[rule]
type = "threshold"
model = "[selu]"
value = 0.05
"""


def test_check_then_verdicts(tmp_path, capsys):
    card = tmp_path / "cli-card.toml"
    card.write_text(CARD)
    store = str(tmp_path / "runs")
    assert main(["check", str(card), "--store", store]) == 0
    out = said(capsys)
    assert "cli-card" in out and "a [b]claim[/b] with [[brackets]]" in out and "[selu]" in out
    assert main(["verdicts", "--store", store, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["card_id"] == "cli-card" and len(rows[0]["run_ids"]) == 2
    assert rows[0]["verdict"] in ("supported", "contradicted", "inconclusive") and len(rows[0]["card_hash"]) == 16
    assert main(["check", str(card), "--store", store]) == 0  # reuses the runs: same verdict
    capsys.readouterr()
    assert main(["verdicts", "--store", store, "--all", "--format", "json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in both] == [rows[0]["verdict"]] * 2 and both[0]["run_ids"] == both[1]["run_ids"]
    assert main(["verdicts", "--store", store, "--card", "cli-card"]) == 0
    out = said(capsys)
    assert "cli-card" in out and rows[0]["card_hash"][:8] in out and "[selu]" in out


def test_check_and_verdicts_refuse_cleanly(tmp_path, capsys):
    store = str(tmp_path / "runs")
    assert main(["check", "--store", store]) == 2
    assert "give card ids or files" in said(capsys)
    assert main(["check", "no-such-card", "--store", store]) == 2
    assert "unknown card 'no-such-card'" in said(capsys)
    assert main(["check", "--all", "--kind", "anecdotal", "--store", store]) == 2
    assert "unknown claim kind 'anecdotal'" in said(capsys)
    bad = tmp_path / "bad.toml"
    bad.write_text(CARD + "colour = 1\n")
    assert main(["check", str(bad), "--store", store]) == 2
    assert "unknown key 'colour'" in said(capsys)
    assert main(["verdicts", "--store", store]) == 1
    assert "no verdicts" in said(capsys)
    assert not (tmp_path / "runs").exists()  # refusals and reads create no store


def test_cards_lists_and_filters(capsys):
    assert main(["cards", "--kind", "closed-form", "--format", "json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    ids = {c["id"] for c in cards}
    assert "selu-fixed-point" in ids and "parity-negative-eigenvalues-mamba" not in ids
    assert all(c["kind"] == "closed-form" and len(c["hash"]) == 16 for c in cards)
    assert main(["cards"]) == 0
    out = said(capsys)
    assert "parity-negative-eigenvalues-mamba" in out and "selu-fixed-point" in out


def test_papers_catalogue_and_one_paper_with_its_verdict(tmp_path, capsys):
    assert main(["papers", "--format", "json", "--kind", "block"]) == 0
    papers = json.loads(capsys.readouterr().out)
    assert papers and all(p["kind"] == "block" for p in papers)
    selu = next(p for p in papers if p["arxiv"] == "1706.02515")
    assert "selu-fixed-point" in selu["cards"] and selu["status"] != "checked"  # no store, no verdicts
    assert main(["papers", "2411.12537"]) == 0
    out = said(capsys)
    assert "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues" in out
    assert "mamba.py" in out and "parity-negative-eigenvalues-mamba" in out
    # a store with a verdict: the paper is checked
    store = str(tmp_path / "runs")
    from layerlab.arena.store import Store
    from layerlab.claims.card import load_card

    card = load_card("selu-fixed-point")
    Store(store).add_verdict({"card_id": card.id, "card_hash": card.hash, "verdict": "supported",
                              "observed": 0.01, "lo": 0.0, "hi": 0.02, "run_ids": []})
    assert main(["papers", "selu", "--store", store]) == 0
    out = said(capsys)
    assert "supported" in out and "selu-fixed-point" in out
    assert main(["papers", "--status", "checked", "--format", "json", "--store", store]) == 0
    assert [p["slug"] for p in json.loads(capsys.readouterr().out)] == [selu["slug"]]
    assert main(["papers", "no such paper title xyz"]) == 2
    assert "error:" in said(capsys)
    assert main(["papers", "--status", "done"]) == 2
    assert "unknown paper status 'done'" in said(capsys)


def test_blocks_show_their_source_file(capsys):
    assert main(["blocks", "--kind", "mixer"]) == 0
    out = said(capsys)
    assert "blocks/mixers/attention.py" in out and "blocks/mixers/mamba.py" in out
