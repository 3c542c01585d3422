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
    """Issue 21: a token task has no default model: one line naming the table, with an example, brackets
    intact; nothing written."""
    p = tmp_path / "tinyscale.toml"
    p.write_text('name = "tinyscale"\n[[tasks]]\nname = "parity"\n')
    assert main(["run", str(p), "--store", str(tmp_path / "runs")]) == 2
    got = capsys.readouterr()
    assert got.out == "" and len(got.err.splitlines()) == 1
    assert got.err.startswith("error: suite 'tinyscale' has no [[models]], and task 'parity' reads token sequences")
    assert '[[models]] label = "attention" backbone = "sequence" mixer = "attention"' in got.err
    assert not (tmp_path / "runs").exists()


def test_vector_suite_without_models_runs_the_default_classifier(tmp_path, capsys):
    """Issue 21: digits without [[models]] trains the classifier with the MLP (the quick suite's digits model)."""
    p = tmp_path / "digits-only.toml"
    p.write_text('name = "digits-only"\nseeds = [0]\n[train]\nsteps = 2\neval_every = 0\n'
                 '[[tasks]]\nname = "digits"\nbudget = 3000\n')
    store = str(tmp_path / "runs")
    assert main(["run", str(p), "--store", store]) == 0
    assert "mlp" in said(capsys)
    assert main(["export", "--store", store]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["spec"]["model"]["backbone"] == "classifier" and run["spec"]["model"]["channel"] == "mlp"
    assert run["status"] == "done"


def test_user_labels_are_printed_literally_in_progress_tables_and_runs(tmp_path, capsys):
    """Labels that look like markup (or break it: '[/]') reach the terminal verbatim: progress lines,
    the leaderboard, `runs`, `board`. Before issue 21, '[/]' raised rich's MarkupError."""
    p = tmp_path / "marked.toml"
    p.write_text('name = "[b]marked[/b]"\nseeds = [0]\n[train]\nsteps = 2\neval_every = 0\n'
                 '[[tasks]]\nname = "digits"\nlabel = "[/]digits[red]"\n'
                 '[[models]]\nlabel = "[b]mlp[/b]"\nbackbone = "classifier"\nd_model = 8\nn_layers = 1\n')
    store = str(tmp_path / "runs")
    assert main(["run", str(p), "--store", store]) == 0
    out = said(capsys)
    assert "suite [b]marked[/b]" in out and "[/]digits[red]" in out and "[b]mlp[/b]" in out
    assert main(["board", "--store", store, "--suite", "[b]marked[/b]"]) == 0
    out = said(capsys)
    assert "[b]marked[/b] · [/]digits[red]" in out and "[b]mlp[/b]" in out
    assert main(["runs", "--store", store, "--suite", "[b]marked[/b]"]) == 0
    assert "digits" in said(capsys)
    assert main(["runs", "--store", store, "--suite", "[b]nope[/b]"]) == 2
    assert "unknown suite in the store '[b]nope[/b]'" in said(capsys)


def test_a_bug_is_one_line_exit_1_and_a_traceback_with_layerlab_debug(monkeypatch, capsys):
    import layerlab.cli as cli

    def boom(args, console):
        raise KeyError("not a user error")

    monkeypatch.setattr(cli, "cmd_cards", boom)
    monkeypatch.delenv("LAYERLAB_DEBUG", raising=False)
    assert main(["cards"]) == 1
    got = capsys.readouterr()
    assert len(got.err.splitlines()) == 1 and "Traceback" not in got.err
    assert got.err.startswith("error: internal error (KeyError: 'not a user error'). This is a bug in layerlab")
    monkeypatch.setenv("LAYERLAB_DEBUG", "1")
    with pytest.raises(KeyError, match="not a user error"):
        main(["cards"])


def test_reading_commands_create_no_store_and_refuse_paths_that_are_not_stores(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    for argv in (["runs"], ["export"], ["board"], ["verdicts"], ["papers", "--format", "json"]):
        main([*argv, "--store", str(missing)])
    assert main(["show", "abc123", "--store", str(missing)]) == 2
    assert "no run 'abc123': there is no store at" in said(capsys)
    assert not missing.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a store")
    for argv in (["runs"], ["show", "abc"], ["run", "quick"], ["report"], ["check", "--all"]):
        assert main([*argv, "--store", str(a_file)]) == 2
        assert f"cannot use '{a_file}' as a store: it is a file, not a directory" in said(capsys)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "store.sqlite").write_bytes(b"this is not sqlite" * 10)
    assert main(["runs", "--store", str(junk)]) == 2
    assert "is not a layerlab store (file is not a database)" in said(capsys)
    assert a_file.read_text() == "not a store" and (junk / "store.sqlite").read_bytes() == b"this is not sqlite" * 10


def test_usage_errors_are_one_line_with_suggestions(capsys):
    assert main(["rn", "quick"]) == 2
    got = capsys.readouterr()
    assert got.err.startswith("error: layerlab: unknown command 'rn' (did you mean 'run' or 'runs'?")
    assert len(got.err.splitlines()) == 1 and got.out == ""
    assert main(["runs", "--sto", "x"]) == 2  # no abbreviated flags
    assert "unrecognized arguments: --sto x" in said(capsys)
    assert main(["run", "quick", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in said(capsys)
    assert main(["run", "quick", "--device", "tpu:3"]) == 2
    assert "unknown --device 'tpu:3'" in said(capsys)


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
    assert "unknown claim or paper kind 'anecdotal'" in said(capsys)
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


def test_cards_filter_by_paper_kind_and_training_methods(capsys):
    from layerlab.claims.card import load_cards
    from layerlab.claims.catalogue import paper_kinds

    cards = load_cards()
    of = paper_kinds(c.paper for c in cards)
    assert main(["cards", "--kind", "training", "--format", "json"]) == 0
    ids = {c["id"] for c in json.loads(capsys.readouterr().out)}
    # a card whose paper is a training paper, or whose suite applies a method (orthograd's paper is a block paper)
    assert ids == {c.id for c in cards if of[c.paper] == "training" or c.methods}
    assert "orthograd-modular-addition-no-wd" in ids and "selu-fixed-point" not in ids
    assert main(["cards", "--kind", "theory", "--format", "json"]) == 0
    assert {c["id"] for c in json.loads(capsys.readouterr().out)} == {c.id for c in cards if of[c.paper] == "theory"}
    assert main(["check", "--all", "--kind", "trainin"]) == 2
    assert "unknown claim or paper kind 'trainin'; did you mean 'training'" in said(capsys)


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


def test_lens_summary_table_json_csv(tmp_path, capsys):
    suite = tmp_path / "plain.toml"
    suite.write_text('name = "plain"\nseeds = [0]\nlr = [3e-3]\n[train]\nsteps = 6\nbatch_size = 32\n'
                     'eval_every = 6\n[[tasks]]\nname = "digits"\n'
                     '[[models]]\nlabel = "mlp"\nbackbone = "classifier"\nd_model = 16\nn_layers = 1\n')
    store = str(tmp_path / "runs")
    assert main(["run", str(suite), "--store", store]) == 0
    from layerlab.arena.inspect_run import checkpoint_model
    from layerlab.arena.store import Store
    from layerlab.lens.spectra import model_summary

    s = Store(store)
    rid = s.runs()[0]["run_id"]
    expected = model_summary(checkpoint_model(s, rid)[2])
    assert len(expected.layers) >= 2
    capsys.readouterr()
    assert main(["lens", rid[:10], "--summary", "--format", "json", "--store", store]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["run_id"] == rid and got["step"] == 6
    assert [r["name"] for r in got["layers"]] == [r["name"] for r in expected.layers]
    assert [r["alpha"] for r in got["layers"]] == [r["alpha"] for r in expected.layers]
    assert got["average"] == expected.average
    assert main(["lens", rid, "--summary", "--format", "csv", "--store", store]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["name"] for r in rows] == [r["name"] for r in expected.layers] + ["average"]
    assert float(rows[-1]["alpha"]) == expected.average["alpha"]
    assert main(["lens", rid, "--summary", "--randomize", "--store", store]) == 0
    out = said(capsys)
    assert "weight spectra" in out and "average" in out and f"{expected.average['alpha']:.4g}" in out
    assert main(["lens", rid, "--store", store]) == 2
    assert "give --probe NAMES" in said(capsys)
    assert main(["lens", rid, "--summary", "--probe", "weights", "--store", store]) == 2
