"""Claim cards: strict parsing, the hash, the built-in cards."""
import copy
import tomllib

import pytest

from layerlab.claims.card import Card, Measure, load_card, load_cards, parse_card, read_card
from layerlab.claims.measures import get_measure, measure_names
from layerlab.claims.rules import All, Difference, Tolerance
from layerlab.errors import ConfigError

INLINE = """
paper = "2411.12537"
claim = "negative eigenvalues let a diagonal linear RNN learn parity"
where = "abstract"
kind = "comparative"
deviations = "tiny"

[suite]
seeds = [0, 1]
lr = [3e-3]
train = { steps = 4, batch_size = 8 }
[[suite.tasks]]
name = "parity"
params = { length = 8, n_eval = 32 }
[[suite.models]]
label = "neg"
mixer = "mamba"
mixer_options = { negative_eigenvalues = true }
d_model = 8
n_layers = 1
[[suite.models]]
label = "pos"
mixer = "mamba"
d_model = 8
n_layers = 1

[rule]
type = "difference"
model = "neg"
baseline = "pos"
"""


def base() -> dict:
    return tomllib.loads(INLINE)


def test_inline_card_parses_with_defaults():
    card = parse_card(base(), default_id="tiny")
    assert card.id == "tiny" and card.kind == "comparative" and card.suite is None
    assert card.rule == Difference("neg", "pos", task="parity")  # the one task filled in
    assert card.metric.name is None and card.metric.split == "test" and card.metric.direction is None
    suite = card.resolve_suite()
    assert suite.name == "tiny" and [m.label for m in suite.models] == ["neg", "pos"]
    assert card.setting["tasks"][0]["name"] == "parity"


def test_id_defaults_to_file_stem_and_can_be_given(tmp_path):
    p = tmp_path / "my-card.toml"
    p.write_text(INLINE)
    assert read_card(p).id == "my-card" and read_card(p).path == p
    p.write_text('id = "other"\n' + INLINE)
    assert read_card(p).id == "other"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(colour="red"), r"unknown key 'colour' in card 'tiny'.*valid keys: id, paper, claim"),
    (lambda d: d["suite"].update(sedes=[0]), r"unknown key 'sedes' in suite.*did you mean 'seeds'"),
    (lambda d: d["suite"]["models"][0].update(mixr="x"), r"unknown key 'mixr'"),
    (lambda d: d["suite"]["models"][0].update(mixer="mambo"), r"mambo.*did you mean 'mamba'"),
    (lambda d: d.update(metric={"nam": "accuracy"}), r"unknown key 'nam' in card 'tiny' \[metric\].*valid keys: name, split, direction"),
    (lambda d: d["rule"].update(basline="pos"), r"unknown key 'basline' in card 'tiny' \[rule\].*did you mean 'baseline'"),
    (lambda d: d.update(metric={"direction": "up"}), r"unknown metric direction.*'up'.*Valid: higher, lower"),
    (lambda d: d.update(metric={"split": "val"}), r"split must be \"test\""),
    (lambda d: d.update(kind="anecdotal"), r"unknown claim kind.*'anecdotal'"),
    (lambda d: d.pop("deviations"), r"needs `deviations`"),
    (lambda d: d.update(claim="  "), r"`claim` must be non-empty text"),
    (lambda d: d.update(paper="Mamba paper"), r"`paper` must be an arXiv id"),
    (lambda d: d.pop("rule"), r"needs a \[rule\] table"),
    (lambda d: d.pop("suite"), r"needs exactly one setting"),
    (lambda d: d.update(measure={"name": "selu_fixed_point"}), r"needs exactly one setting.*suite, measure"),
    (lambda d: d["rule"].update(model="neg2"), r"unknown model label \(`model`\) for task 'parity'.*did you mean 'neg'"),
    (lambda d: d["rule"].update(task="parity2"), r"unknown task label.*'parity2'"),
    (lambda d: d.update(suite="state-trackin"), r"unknown built-in suite 'state-trackin'.*did you mean 'state-tracking'"),
    (lambda d: d.update(id="Bad Id"), r"`id` must be lowercase"),
])
def test_strict_errors_name_the_problem(edit, message):
    d = base()
    edit(d)
    with pytest.raises(ConfigError, match=message):
        parse_card(d, default_id="tiny")


def test_rule_needs_a_task_when_the_suite_has_several():
    d = base()
    d["suite"]["tasks"].append({"name": "mod_count", "params": {"length": 8}})
    with pytest.raises(ConfigError, match=r"the suite has 2 tasks \(parity, mod_count\); the rule must name one"):
        parse_card(d, default_id="tiny")
    d["rule"]["task"] = "mod_count"
    assert parse_card(d, default_id="tiny").rule.task == "mod_count"


def test_builtin_suite_by_name_checks_the_task_model_list():
    d = base()
    d["suite"] = "state-tracking"
    d["rule"] = {"type": "difference", "task": "parity", "model": "mamba[-1,1]", "baseline": "mamba[0,1]"}
    card = parse_card(d, default_id="tiny")
    assert card.suite == "state-tracking" and card.setting == "state-tracking"
    assert card.resolve_suite().name == "state-tracking"
    d["rule"]["task"] = "S3"  # a task whose models list leaves mamba out
    with pytest.raises(ConfigError, match=r"model label \(`model`\) for task 'S3'.*Valid: deltanet"):
        parse_card(d, default_id="tiny")


def test_hash_covers_every_field_and_ignores_explicit_defaults():
    h = parse_card(base(), default_id="tiny").hash
    assert len(h) == 16
    same = base()
    same["rule"].update(task="parity", margin=0.0)
    same["metric"] = {"split": "test"}
    assert parse_card(same, default_id="tiny").hash == h
    edits = [lambda d: d.update(claim=d["claim"] + "!"), lambda d: d.update(deviations="other"),
             lambda d: d["suite"]["train"].update(steps=5), lambda d: d["suite"].update(seeds=[0, 1, 2]),
             lambda d: d["rule"].update(margin=0.01), lambda d: d.update(metric={"split": "test@16"}),
             lambda d: d.update(where="Table 2"), lambda d: d.update(kind="qualitative")]
    hashes = {h}
    for edit in edits:
        d = base()
        edit(d)
        hashes.add(parse_card(d, default_id="tiny").hash)
    assert len(hashes) == len(edits) + 1
    assert parse_card(base(), default_id="other").hash != h  # the id is part of it


def test_named_suite_hash_covers_the_suite_content(monkeypatch):
    import layerlab.claims.card as card_mod

    d = base()
    d["suite"] = "state-tracking"
    d["rule"] = {"type": "threshold", "task": "parity", "model": "lru", "value": 0.5}
    h = parse_card(d, default_id="tiny").hash
    real = card_mod._builtin_suite_data

    def edited(name):
        data = copy.deepcopy(real(name))
        data["seeds"] = [0]
        return data

    monkeypatch.setattr(card_mod, "_builtin_suite_data", edited)
    assert parse_card(d, default_id="tiny").hash != h


def test_measure_card():
    d = {k: v for k, v in base().items() if k not in ("suite", "rule")}
    d["measure"] = {"name": "selu_fixed_point", "options": {"depth": 4}, "seeds": [0, 1]}
    d["rule"] = {"type": "tolerance", "tol": 0.1}
    card = parse_card(d, default_id="m")
    assert card.measure == Measure("selu_fixed_point", {"depth": 4}, (0, 1)) and card.setting == card.measure
    assert card.rule == Tolerance(0.1)
    with pytest.raises(ConfigError, match="has no suite"):
        card.resolve_suite()
    bad = copy.deepcopy(d)
    bad["measure"]["options"] = {"dept": 4}
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'dept'; valid options: width=512, depth=32"):
        parse_card(bad, default_id="m")
    bad = copy.deepcopy(d)
    bad["measure"]["name"] = "selu_fixed_pont"
    with pytest.raises(ConfigError, match=r"unknown measurement 'selu_fixed_pont'.*did you mean 'selu_fixed_point'"):
        parse_card(bad, default_id="m")
    bad = copy.deepcopy(d)
    bad["measure"]["seeds"] = [0, 0]
    with pytest.raises(ConfigError, match="distinct integers"):
        parse_card(bad, default_id="m")
    bad = copy.deepcopy(d)
    bad["rule"] = {"type": "tolerance", "tol": 0.1, "model": "x"}
    with pytest.raises(ConfigError, match="names no task or model"):
        parse_card(bad, default_id="m")


def test_combined_rule_resolves_each_part():
    d = base()
    d["rule"] = {"type": "all", "rules": [{"type": "difference", "model": "neg", "baseline": "pos"},
                                          {"type": "threshold", "model": "neg", "value": 0.9}]}
    card = parse_card(d, default_id="tiny")
    assert isinstance(card.rule, All) and all(r.task == "parity" for r in card.rule.rules)


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("paper = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_card(p)
    with pytest.raises(ConfigError, match="does not exist"):
        read_card(tmp_path / "nothing.toml")
    with pytest.raises(ConfigError, match=r"unknown card 'no-such-card'"):
        load_card("no-such-card")


def test_duplicate_ids_are_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text('id = "same"\n' + INLINE)
    with pytest.raises(ConfigError, match="two cards have the id 'same'"):
        load_cards(sorted(tmp_path.glob("*.toml")))


def test_builtin_cards_load_with_unique_ids_matching_their_files():
    cards = load_cards()
    assert {"parity-negative-eigenvalues-mamba", "selu-fixed-point"} <= {c.id for c in cards}
    for c in cards:
        assert isinstance(c, Card) and c.path is not None and c.id == c.path.stem
        assert load_card(c.id).hash == c.hash


def test_selu_measurement_reaches_the_fixed_point_and_starts_away():
    m = get_measure("selu_fixed_point")
    assert "selu_fixed_point" in measure_names()
    out = m(0, width=256, depth=24, batch=256, mean0=0.5, var0=2.0)
    assert out["start_error"] > 0.9  # |var0 - 1| ~ 1
    assert out["error"] < 0.1 and abs(out["mean"]) < 0.1 and abs(out["var"] - 1) < 0.1
    # control: the same network at depth 1 is still far from (0, 1)
    assert m(0, width=256, depth=1, batch=256, mean0=0.5, var0=2.0)["error"] > 0.3
    with pytest.raises(ConfigError, match="unknown option"):
        m(0, widht=3)


def test_card_lists_the_training_methods_its_suite_applies():
    from layerlab.claims.card import load_card

    assert load_card("mixup-vs-erm-digits").methods == ("mixup",)
    assert load_card("orthograd-modular-addition-no-wd").methods == ("orthograd",)
    assert load_card("selu-fixed-point").methods == ()  # a measure card
    assert load_card("gelu-vs-relu-digits").methods == ()
