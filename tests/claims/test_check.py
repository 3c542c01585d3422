"""`check`: a tiny inline card end to end into a temporary store, reuse, edits, strictness."""
import tomllib

import pytest
from rich.console import Console

from layerlab.arena.leaderboard import board
from layerlab.arena.provenance import git_revision
from layerlab.arena.store import Store
from layerlab.arena.suite import expand
from layerlab.claims.card import load_card, parse_card, read_card
from layerlab.claims.check import _direction, check_card, restrict, store_suite_name
from layerlab.claims.rules import INCONCLUSIVE, VERDICTS
from layerlab.errors import ConfigError

TINY = """
paper = "2002.05202"
claim = "SwiGLU beats a plain MLP"
where = "Table 1"
kind = "comparative"
deviations = "digits, 12 steps, 2 seeds, 2 learning rates: a test of the machinery, not of the claim"

[suite]
seeds = [0, 1]
lr = [3e-3, 1e-2]
train = { steps = 12, batch_size = 32, eval_every = 6, log_every = 3 }
[[suite.tasks]]
name = "digits"
budget = 3000
[[suite.models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
n_layers = 1
[[suite.models]]
label = "swiglu"
backbone = "classifier"
channel = "swiglu"
n_layers = 1
[[suite.models]]
label = "unused"
backbone = "classifier"
channel = "mlp"
n_layers = 2

[rule]
type = "difference"
model = "swiglu"
baseline = "mlp"
"""


def quiet() -> Console:
    return Console(quiet=True)


@pytest.fixture
def card_file(tmp_path):
    p = tmp_path / "tiny-card.toml"
    p.write_text(TINY)
    return p


def test_check_end_to_end_then_reuse_then_edit(tmp_path, card_file):
    store = Store(tmp_path / "runs")
    card = read_card(card_file)
    first = check_card(card, store, console=quiet())
    rows = store.verdicts()
    assert len(rows) == 1
    v = rows[0]
    assert v["verdict_id"] == first.verdict_id and v["verdict"] in VERDICTS
    assert v["card_id"] == "tiny-card" and v["card_hash"] == card.hash and v["git_revision"] == git_revision()
    assert v["paper"] == "2002.05202" and v["kind"] == "comparative" and v["rule"]["type"] == "difference"
    # only the rule's models ran: 2 models x 2 lrs x 2 seeds, not the unused one
    assert len(v["run_ids"]) == 8 and len(store.runs()) == 8
    assert v["suite"] == store_suite_name(card, v["run_ids"]) and v["suite"].startswith("tiny-card@")
    models = v["details"]["models"]
    assert set(models) == {"swiglu", "mlp"} and v["details"]["split"] == "test"
    assert v["observed"] == pytest.approx(models["swiglu"]["mean"] - models["mlp"]["mean"])
    assert v["lo"] < v["observed"] < v["hi"]  # two seeds, paired: a real interval
    # the learning rate is the leaderboard's (chosen on validation), and the values are its test numbers
    entries = {e.model: e for e in board(store, v["suite"])["digits"]}
    for label in ("swiglu", "mlp"):
        assert models[label]["lr"] == entries[label].lr
        assert models[label]["mean"] == pytest.approx(entries[label].test[0])
        assert len(models[label]["values"]) == 2 and models[label]["val"] == pytest.approx(entries[label].val)
    assert v["seconds"] > 0
    attempts = {r["run_id"]: r["attempts"] for r in store.runs()}

    # a second check on the same store: no training, same runs, same verdict and numbers
    second = check_card(read_card(card_file), store, console=quiet())
    assert {r["run_id"]: r["attempts"] for r in store.runs()} == attempts
    v2 = store.verdicts()[0]
    assert v2["verdict_id"] == second.verdict_id != first.verdict_id
    for key in ("card_hash", "verdict", "observed", "lo", "hi", "run_ids", "suite"):
        assert v2[key] == v[key], key
    assert len(store.verdicts(latest=False)) == 2

    # an edited card (its claim text only): a new hash and its own verdict, the same runs
    card_file.write_text(TINY.replace("beats a plain MLP", "beats an MLP"))
    edited = read_card(card_file)
    assert edited.hash != card.hash
    check_card(edited, store, console=quiet())
    hashes = [r["card_hash"] for r in store.verdicts("tiny-card", latest=False)]
    assert hashes == [card.hash, card.hash, edited.hash]
    assert store.verdicts("tiny-card")[0]["card_hash"] == edited.hash
    assert {r["run_id"]: r["attempts"] for r in store.runs()} == attempts

    # an edited setting: new runs under a new store suite name, never mixed with the old ones
    card_file.write_text(TINY.replace("steps = 12", "steps = 6"))
    third = check_card(read_card(card_file), store, console=quiet())
    assert third.record["suite"] != v["suite"] and not set(third.record["run_ids"]) & set(v["run_ids"])
    assert len(store.suite_rows(third.record["suite"])) == 8


def test_unknown_key_fails_before_anything_runs(tmp_path, card_file):
    card_file.write_text(TINY.replace('where = "Table 1"', 'where = "Table 1"\nsetting = "x"'))
    with pytest.raises(ConfigError, match=r"unknown key 'setting' in card .*valid keys: id, paper, claim"):
        read_card(card_file)
    card_file.write_text(TINY.replace("n_layers = 1\n[[suite.models]]\nlabel = \"swiglu\"",
                                      "n_layer = 1\n[[suite.models]]\nlabel = \"swiglu\""))
    with pytest.raises(ConfigError, match=r"unknown key 'n_layer'.*did you mean 'n_layers'"):
        read_card(card_file)


def test_missing_split_fails_before_training(tmp_path, card_file):
    card_file.write_text(TINY + '\n[metric]\nsplit = "test@64"\n')
    store = Store(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"no split 'test@64'; its test splits: test"):
        check_card(read_card(card_file), store, console=quiet())
    assert store.runs() == []


def test_unknown_metric_name_says_what_runs_have(tmp_path, card_file):
    card_file.write_text(TINY.replace("steps = 12", "steps = 2").replace("seeds = [0, 1]", "seeds = [0]")
                         .replace("lr = [3e-3, 1e-2]", "lr = [3e-3]")
                         + '\n[metric]\nname = "f1"\ndirection = "higher"\n')
    store = Store(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"unknown metric of task 'digits'.*'f1'.*Valid: accuracy, ece, loss"):
        check_card(read_card(card_file), store, console=quiet())
    assert store.runs() == []  # found when the card is planned, before anything trains (issue 21)


def test_metric_direction():
    card = parse_card(tomllib.loads(TINY), default_id="t")
    assert _direction(card, "accuracy", "accuracy", True) is True
    assert _direction(card, "loss", "accuracy", True) is False
    with pytest.raises(ConfigError, match="direction of metric 'f1' is unknown"):
        _direction(card, "f1", "accuracy", True)
    data = tomllib.loads(TINY)
    data["metric"] = {"name": "f1", "direction": "lower"}
    assert _direction(parse_card(data, default_id="t"), "f1", "accuracy", True) is False


def test_builtin_suite_is_restricted_to_the_rules_part():
    data = tomllib.loads(TINY)
    data["suite"] = "state-tracking"
    data["rule"] = {"type": "all", "rules": [
        {"type": "difference", "task": "parity", "model": "mamba[-1,1]", "baseline": "mamba[0,1]"},
        {"type": "threshold", "task": "S3", "model": "deltanet[-1,1]", "value": 0.9}]}
    card = parse_card(data, default_id="t")
    part = restrict(card.resolve_suite(), card.rule.refs())
    assert [t.label or t.name for t in part.tasks] == ["parity", "S3"]
    assert [t.models for t in part.tasks] == [("mamba[-1,1]", "mamba[0,1]"), ("deltanet[-1,1]",)]
    planned = expand(part)
    # parity: 2 models x 2 lrs x 3 seeds; S3: 1 model x 1 lr x 3 seeds
    assert len(planned) == 12 + 3
    assert {(p.task_label, p.model_label) for p in planned} == {
        ("parity", "mamba[-1,1]"), ("parity", "mamba[0,1]"), ("S3", "deltanet[-1,1]")}


def test_measure_card_records_its_values(tmp_path):
    card = load_card("selu-fixed-point")
    small = parse_card({**{k: v for k, v in tomllib.loads(card.path.read_text()).items()},
                        "measure": {"name": "selu_fixed_point", "seeds": [0, 1, 2],
                                    "options": {"width": 128, "depth": 16, "batch": 256}}}, default_id="selu-small")
    store = Store(tmp_path)
    res = check_card(small, store, console=quiet())
    v = store.verdicts("selu-small")[0]
    assert v["run_ids"] == [] and v["suite"] is None and v["verdict"] == res.outcome.verdict
    values = v["details"]["models"]["measurement"]["values"]
    assert list(values) == ["0", "1", "2"] and v["observed"] == pytest.approx(sum(values.values()) / 3)
    assert v["details"]["split"] is None and v["details"]["metric"] == "error"
    assert v["details"]["models"]["measurement"]["mean start_error"] > 0.4


def test_unfinished_seeds_make_it_inconclusive(tmp_path, card_file):
    """A rule needs two finished seeds per model: a model whose runs all failed is inconclusive."""
    import layerlab.claims.check as check_mod

    card = read_card(card_file)
    store = Store(tmp_path / "runs")

    def fake_run_suite(suite, store, **kw):  # register the runs, then fail every swiglu one
        for p in expand(suite):
            rid = store.add_run(p.spec, suite=suite.name, labels=p.labels)
            ok = p.model_label == "mlp"
            store.finish(rid, status="done" if ok else "failed",
                         results={"val": {"accuracy": 0.5}, "test": {"accuracy": 0.5 + p.spec.seed / 10}} if ok else None)
        return {}

    orig = check_mod.run_suite
    check_mod.run_suite = fake_run_suite
    try:
        res = check_card(card, store, console=quiet())
    finally:
        check_mod.run_suite = orig
    assert res.outcome.verdict == INCONCLUSIVE
    sw = res.record["details"]["models"]["swiglu"]
    assert sw["n"] == 0 and sw["failed"] == 2


def test_check_cards_validates_every_card_before_training(tmp_path, card_file):
    from layerlab.claims.check import check_cards

    good = read_card(card_file)
    bad_file = tmp_path / "bad-split.toml"
    bad_file.write_text(TINY + '\n[metric]\nsplit = "test@64"\n')
    store = Store(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"card 'bad-split'.*no split 'test@64'"):
        check_cards([good, read_card(bad_file)], store, console=quiet())
    assert store.runs() == [] and store.verdicts() == []
