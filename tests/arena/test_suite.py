import tomllib

import pytest
from rich.console import Console

from layerlab.arena.leaderboard import board
from layerlab.arena.runner import run_suite
from layerlab.arena.store import Store
from layerlab.arena.suite import builtin_suites, expand, load_suite, parse_suite
from layerlab.errors import ConfigError

from .conftest import TINY_SUITE


def tiny(**changes):
    data = tomllib.loads(TINY_SUITE)
    data.update(changes)
    return data


def quiet() -> Console:
    return Console(quiet=True)


def test_expand_plans_every_combination(tiny_suite_path):
    planned = expand(load_suite(tiny_suite_path))
    # digits: 2 classifier models x 2 lr x 2 seeds; parity: attention x 1 lr x 2 seeds
    assert len(planned) == 8 + 2
    assert len({p.spec.run_id for p in planned}) == 10
    for p in planned:
        n = p.spec.model.d_model
        assert n % p.spec.model.width_multiple == 0


def test_sizing_meets_budget_within_tolerance(tiny_suite_path):
    from layerlab.arena.suite import count_for

    for p in expand(load_suite(tiny_suite_path)):
        achieved = count_for(p.spec.model, p.task)
        assert abs(achieved - 6000) <= 0.10 * 6000, (p.model_label, achieved)


def test_unknown_top_level_key_names_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'sedes'.*did you mean 'seeds'.*valid keys: name"):
        parse_suite(tiny(sedes=[0]))


def test_unknown_model_key_and_block_name():
    data = tiny()
    data["models"][0]["chanel"] = "mlp"
    with pytest.raises(ConfigError, match="'chanel'.*did you mean 'channel'"):
        parse_suite(data)
    data = tiny()
    data["models"][2]["mixer"] = "atention"
    with pytest.raises(ConfigError, match="did you mean 'attention'"):
        expand(parse_suite(data))


def test_unknown_train_key_fails_before_training():
    data = tiny()
    data["train"]["step"] = 3
    with pytest.raises(ConfigError, match="'step'.*did you mean 'steps'"):
        parse_suite(data)


def test_unknown_probe_or_probe_option_fails_when_the_suite_is_parsed():
    for probes, match in [({"names": ["weight"]}, r"unknown probe 'weight'; did you mean 'weights'"),
                          ({"names": ["hessian"], "options": {"hessian": {"k": 0}}}, "hessian.k")]:
        with pytest.raises(ConfigError, match=match):
            parse_suite(tiny(probes=probes))
        data = tiny()
        data["tasks"][1]["probes"] = probes  # a task's own probes are checked too
        with pytest.raises(ConfigError, match=match):
            parse_suite(data)
    assert parse_suite(tiny(probes={"names": ["weights"]})).probes == {"names": ["weights"]}


def test_width_not_divisible_by_heads_is_rejected():
    data = tiny()
    del data["tasks"][1]["budget"]
    data["models"][2]["d_model"] = 30
    data["models"][2]["mixer_options"] = {"n_heads": 4}
    with pytest.raises(ConfigError, match="30.*4|4.*30"):
        expand(parse_suite(data))


def test_impossible_task_params_are_rejected():
    data = tiny()
    data["tasks"][1] = {"name": "mqar", "params": {"length": 16, "pairs": 8}, "budget": 6000}
    with pytest.raises(ConfigError, match="pairs"):
        expand(parse_suite(data))


def test_budget_that_cannot_be_met_is_refused():
    data = tiny()
    data["tasks"][0]["budget"] = 50  # the input and output layers alone exceed this
    with pytest.raises(ConfigError, match="cannot meet the parameter budget 50"):
        expand(parse_suite(data))


def test_unknown_builtin_suite_suggests():
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        load_suite("quik")


def test_builtin_suites_parse_and_expand():
    assert "quick" in builtin_suites()
    for name in builtin_suites():
        assert expand(load_suite(name))


def test_run_suite_then_rerun_skips_everything(tiny_suite_path, tmp_path):
    store = Store(tmp_path / "store")
    suite = load_suite(tiny_suite_path)
    counts = run_suite(suite, store, console=quiet())
    assert counts == {"done": 10}
    finished = {r["run_id"]: r["finished"] for r in store.runs()}
    counts = run_suite(suite, store, console=quiet())
    assert counts == {"done": 10}
    assert {r["run_id"]: r["finished"] for r in store.runs()} == finished
    assert all(r["attempts"] == 1 for r in store.runs())
    for r in store.runs():
        assert r["git_revision"] and r["versions_json"] and r["device"] and r["data_checksum"]
    b = board(store, "tiny")
    assert set(b) == {"digits", "parity"}
    assert {e.model for e in b["digits"]} == {"mlp", "swiglu"}
    assert all(e.seeds == 2 for e in b["digits"])


def test_diverged_run_is_recorded_and_suite_goes_on(tmp_path):
    data = tiny(lr=[100.0, 3e-3], seeds=[0])
    data["optim"] = {"name": "sgd", "grad_clip": None, "momentum": 0.0}
    data["tasks"] = data["tasks"][:1]
    data["tasks"][0].pop("budget")
    data["models"] = [{"label": "dln", "backbone": "deep_linear", "d_model": 32, "n_layers": 3}]
    store = Store(tmp_path)
    counts = run_suite(parse_suite(data), store, console=quiet())
    assert counts == {"diverged": 1, "done": 1}
    div = store.runs(status="diverged")[0]
    assert div["diverged_step"] >= 1
    (entry,) = board(store, "tiny")["digits"]
    assert entry.lr == 3e-3 and entry.diverged == 1


def test_lr_is_selected_on_validation_not_test(tmp_path):
    """Plant results where the best validation lr is not the best test lr."""
    data = tiny(seeds=[0, 1])
    data["tasks"] = data["tasks"][:1]
    data["models"] = data["models"][:1]
    suite = parse_suite(data)
    store = Store(tmp_path)
    for p in expand(suite):
        rid = store.add_run(p.spec, suite="tiny", labels=p.labels)
        good_val = p.spec.optim.lr == 1e-2
        store.finish(rid, status="done", results={"val": {"accuracy": 0.9 if good_val else 0.8},
                                                  "test": {"accuracy": 0.7 + 0.01 * p.spec.seed if good_val else 0.95}})
    (e,) = board(store, "tiny")["digits"]
    assert e.lr == 1e-2
    assert e.test[0] == pytest.approx(0.705)
    assert e.test[1] == pytest.approx(12.706 * 0.01 / 2 ** 0.5 / 2 ** 0.5, rel=1e-3)  # t * sd / sqrt(n)


def test_corrupt_checkpoint_in_suite_restarts_run(tmp_path, tiny_suite_path):
    data = tiny(seeds=[0], lr=[3e-3])
    data["tasks"] = data["tasks"][:1]
    data["models"] = data["models"][:1]
    suite = parse_suite(data)
    store = Store(tmp_path)
    (p,) = expand(suite)
    rid = store.add_run(p.spec, suite="tiny", labels=p.labels)
    store.mark_running(rid, {})
    path = store.checkpoint_path(rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage")
    assert run_suite(suite, store, console=quiet()) == {"done": 1}
    assert any("corrupt" in e for e in store.events(rid))


def test_baseline_verdicts_need_separated_confidence_intervals(tmp_path):
    """Planted results: 'a' clearly above the baseline, 'b' overlapping it, 'c' clearly below."""
    data = tiny(seeds=[0, 1, 2], lr=[1e-2])
    data["tasks"] = data["tasks"][:1]
    data["baseline"] = "mlp"
    data["models"] = [{"label": lab, "backbone": "classifier", "channel": "mlp", "n_layers": n}
                      for lab, n in (("mlp", 1), ("a", 2), ("b", 3), ("c", 4))]
    data["tasks"][0].pop("budget")
    suite = parse_suite(data)
    assert suite.baseline == "mlp"
    store = Store(tmp_path)
    centre = {"mlp": 0.80, "a": 0.90, "b": 0.81, "c": 0.60}
    for p in expand(suite):
        rid = store.add_run(p.spec, suite="tiny", labels=p.labels)
        acc = centre[p.model_label] + 0.01 * (p.spec.seed - 1)  # sd 0.01: CI half-width 0.0248
        store.finish(rid, status="done", results={"val": {"accuracy": acc}, "test": {"accuracy": acc}})
    verdict = {e.model: e.versus for e in board(store, "tiny", "mlp")["digits"]}
    assert verdict == {"mlp": "base", "a": "better", "b": "≈", "c": "worse"}
    assert all(e.versus is None for e in board(store, "tiny")["digits"])
    with pytest.raises(ConfigError, match="baseline"):
        parse_suite({**data, "baseline": "mlpp"})


def test_one_label_may_name_a_vector_and_a_token_model():
    data = tiny()
    data["models"].append({"label": "mlp", "backbone": "sequence", "mixer": "attention", "channel": "mlp",
                           "mixer_options": {"n_heads": 2}, "n_layers": 1})
    planned = expand(parse_suite(data))
    kinds = {(p.task_label, p.model_label, p.spec.model.backbone) for p in planned}
    assert ("digits", "mlp", "classifier") in kinds and ("parity", "mlp", "sequence") in kinds
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(ConfigError, match="same input kind"):
        parse_suite(data)


def test_sizing_skips_widths_too_small_for_a_block():
    """EvoNorm needs >= 2 channels per group: widths 4 (4 groups) cannot build; sizing goes on."""
    from layerlab.arena.suite import size_to_budget
    from layerlab.spec import ModelSpec
    from layerlab.tasks import build_task

    spec = ModelSpec(backbone="classifier", channel="mlp", norm="evonorm_s0", n_layers=1)
    sized, n = size_to_budget(spec, build_task("digits"), 6700)
    assert sized.d_model % 4 == 0 and sized.d_model >= 8 and abs(n - 6700) <= 670


# ---- a methods dimension (issue 15) ------------------------------------------------------------
METHODS_SUITE = """
name = "methods-dim"
seeds = [0, 1]
lr = [3e-3]
train = { steps = 20, batch_size = 32, eval_every = 0 }
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
d_model = 16
n_layers = 1
[[models]]
label = "mlp-orth"
backbone = "classifier"
d_model = 16
n_layers = 1
methods = [{ name = "orthograd" }]
[[methods]]
label = "plain"
[[methods]]
use = [{ name = "gradient_noise", eta = 0.01 }, { name = "mixup", options = { alpha = 0.4 } }]
"""


def test_methods_dimension_expands_beside_models_and_composes_model_methods_first():
    from layerlab.spec import MethodSpec

    planned = expand(parse_suite(tomllib.loads(METHODS_SUITE)))
    assert len(planned) == 2 * 2 * 2 and len({p.spec.run_id for p in planned}) == 8
    by_label = {}
    for p in planned:
        assert by_label.setdefault(p.model_label, p.spec.methods) == p.spec.methods
    assert by_label == {
        "mlp · plain": (),
        "mlp · gradient_noise+mixup": (MethodSpec("gradient_noise", {"eta": 0.01}), MethodSpec("mixup", {"alpha": 0.4})),
        "mlp-orth · plain": (MethodSpec("orthograd"),),
        "mlp-orth · gradient_noise+mixup": (MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.01}),
                                            MethodSpec("mixup", {"alpha": 0.4})),
    }
    # without a methods dimension, labels and run ids are what they were
    data = tomllib.loads(METHODS_SUITE)
    del data["methods"]
    assert {p.model_label for p in expand(parse_suite(data))} == {"mlp", "mlp-orth"}


def test_unknown_method_or_option_in_a_suite_fails_when_parsed():
    data = tomllib.loads(METHODS_SUITE)
    data["methods"][1]["use"][0]["name"] = "gradient_nois"
    with pytest.raises(ConfigError, match="did you mean 'gradient_noise'"):
        parse_suite(data)
    data = tomllib.loads(METHODS_SUITE)
    data["models"][1]["methods"] = [{"name": "orthograd", "rescal": False}]
    with pytest.raises(ConfigError, match="models\\[1\\].*did you mean 'rescale'"):
        parse_suite(data)
    data = tomllib.loads(METHODS_SUITE)
    data["methods"][0]["uses"] = []
    with pytest.raises(ConfigError, match="unknown key 'uses'.*did you mean 'use'"):
        parse_suite(data)


def test_leaderboard_of_a_methods_dimension_names_the_method_in_each_row(tmp_path):
    from layerlab.arena.leaderboard import render

    data = tomllib.loads(METHODS_SUITE)
    data["models"] = data["models"][:1]
    store = Store(tmp_path / "store")
    assert run_suite(parse_suite(data), store, console=quiet()) == {"done": 4}
    rows = board(store, "methods-dim")["digits"]
    assert {e.model for e in rows} == {"mlp · plain", "mlp · gradient_noise+mixup"}
    assert all(e.seeds == 2 for e in rows)
    console = Console(record=True, width=200)
    for table in render({"digits": rows}, "methods-dim"):
        console.print(table)
    text = console.export_text()
    assert "method" in text and "gradient_noise+mixup" in text and "plain" in text


# ---- bad input, as a new user writes it (issue 21) ----------------------------------------------
def test_a_vector_suite_without_models_gets_the_classifier_with_the_mlp():
    suite = parse_suite({"name": "v", "tasks": [{"name": "digits"}, {"name": "modular",
                                                                     "params": {"p": 7, "encoding": "onehot"}}]})
    (model,) = suite.models
    assert model.label == "mlp" and model.spec.backbone == "classifier" and model.spec.channel == "mlp"
    assert model.spec.n_layers == 2  # the quick suite's digits model
    assert {p.model_label for p in expand(suite)} == {"mlp"}


def test_a_token_task_without_models_names_the_table_and_shows_one():
    for tasks in ([{"name": "parity"}], [{"name": "digits"}, {"name": "modular", "params": {"p": 7}}]):
        with pytest.raises(ConfigError) as e:
            parse_suite({"name": "t", "tasks": tasks, "models": []})
        msg = str(e.value)
        assert "has no [[models]]" in msg and "reads token sequences" in msg and "\n" not in msg
        example = msg.split("for example ", 1)[1].split(" (one key per line)")[0]
        model = tomllib.loads(example.replace(" label", "\nlabel").replace(" backbone", "\nbackbone")
                              .replace(" mixer", "\nmixer"))["models"][0]  # the example is a valid table
        assert parse_suite({"name": "t", "tasks": [{"name": "parity"}], "models": [model]}).models[0].label == "attention"


@pytest.mark.parametrize("change, message", [
    ({"lr": 1e-3}, r"lr must be a non-empty list of distinct learning rates > 0.*got 0.001"),
    ({"lr": [0.0]}, "lr must be"), ({"lr": [float("inf")]}, "lr must be"), ({"lr": []}, "lr must be"),
    ({"seeds": "01"}, r"seeds must be a non-empty list of distinct integers >= 0.*got '01'"),
    ({"seeds": [0, 0]}, "seeds must be"), ({"seeds": [-1]}, "seeds must be"),
    ({"tasks": "digits"}, r"`tasks` must be \[\[tasks\]\] tables"),
    ({"tasks": [{"params": {}}]}, r"tasks\[0\] needs `name`"),
    ({"models": [{"label": "m", "backbone": "classifier", "train": "fast"}]}, r"models\[0\].train must be a table"),
    ({"models": [{"label": 3, "backbone": "classifier"}]}, r"models\[0\].label must be non-empty text"),
    ({"models": [{"backbone": "classifier", "mixer": "mamba"}]}, r"backbone 'classifier' does not use 'mixer'"),
    ({"models": [{"backbone": "classifier", "channel_options": {"expansion": "4"}}]},
     r"channel_options.expansion: expected float, got '4'"),
    ({"models": [{"backbone": "classifier", "channel_options": {"dtype": "float64"}}]}, "sets dtype"),
    ({"budget_tolerance": 0}, r"budget_tolerance must be a fraction in \(0, 1\]"),
    ({"optim": {"lr": 0.1}}, r"\[optim\] sets lr"),
    ({"optim": {"weight_decay": -0.1}}, "weight_decay must be >= 0"),
    ({"optim": {"betas": [0.9, 1.0]}}, r"betas must be two numbers in \[0, 1\)"),
    ({"train": {"eval_every": -1}}, "eval_every must be >= 0"),
    ({"train": {"time_budget_s": float("nan")}}, "time_budget_s must be > 0 seconds"),
    ({"description": 5}, "`description` must be text"),
])
def test_wrong_types_and_out_of_range_numbers_fail_when_parsed(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_suite({**tiny(), **change})


def test_expansion_refuses_what_would_fail_after_the_runs_are_written():
    data = tiny()
    data["tasks"][1]["train"] = {"batch_size": 0}  # parity draws fresh examples: no "whole training set"
    with pytest.raises(ConfigError, match="parity.*batch_size must be >= 1"):
        expand(parse_suite(data))
    data = tiny()
    data["tasks"][1]["params"] = {"length": 1, "n_eval": 64}  # two inputs: a split gets none
    with pytest.raises(ConfigError, match="no input of this size falls in the"):
        expand(parse_suite(data))


def test_suite_files_that_cannot_be_read_are_config_errors(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="is a directory"):
        load_suite(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")
