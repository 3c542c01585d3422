import json
import warnings

import numpy as np
import pytest
import torch

from layerlab.arena.store import Store, StoreRecorder
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.lens.probes import check_probes, probe_names
from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import MemoryRecorder, Trainer
from layerlab.train.checkpoint import load_checkpoint


def digits_spec(probes: ProbeSpec = ProbeSpec(), steps: int = 30) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=3),
                   train=TrainSpec(steps=steps, batch_size=32, eval_every=10, log_every=1), seed=2, probes=probes)


def seq_spec(probes: ProbeSpec = ProbeSpec(), steps: int = 20) -> RunSpec:
    return RunSpec(task=TaskSpec("modular", {"p": 7, "train_fraction": 0.6}),
                   model=ModelSpec(d_model=16, n_layers=1, mixer_options={"n_heads": 2}),
                   optim=OptimSpec(lr=3e-3), train=TrainSpec(steps=steps, batch_size=16, eval_every=10, log_every=1),
                   seed=1, probes=probes)


def curve(rec: MemoryRecorder) -> list[float]:
    return [v for _, v in rec.series("train", "loss")]


GENERIC = [n for n in probe_names() if n != "modes"]  # "modes" needs a deep linear net (tested below)


def deep_linear_spec(probes: ProbeSpec = ProbeSpec(), steps: int = 800) -> RunSpec:
    return RunSpec(task=TaskSpec("linear_teacher", {"in_features": 6, "out_features": 6,
                                                    "singular_values": [3.0, 1.5], "n_train": 32}),
                   model=ModelSpec(backbone="deep_linear", d_model=12, n_layers=2, init="small", init_scale=1e-3),
                   optim=OptimSpec(name="sgd", lr=0.005, momentum=0.0, schedule="constant", grad_clip=0),
                   train=TrainSpec(steps=steps, batch_size=0, eval_every=200, log_every=10, dtype="float64"),
                   probes=probes)


@pytest.mark.parametrize("make", [digits_spec, seq_spec])
@pytest.mark.parametrize("name", GENERIC)
def test_training_with_a_probe_is_bit_identical(make, name):
    plain, probed = MemoryRecorder(), MemoryRecorder()
    Trainer(make(), recorder=plain).fit()
    spec = make(ProbeSpec(names=(name,), schedule="every", every=7, batch_size=32))
    Trainer(spec, recorder=probed).fit()
    assert curve(probed) == curve(plain)  # exact equality, every step
    assert [r for r in probed.rows if r[1] == "val"] == [r for r in plain.rows if r[1] == "val"]
    probe_steps = sorted({s for s, split, _, _ in probed.rows if split == "probe"} | {s for s, _ in probed.arrays})
    assert probe_steps == spec.probes.steps(spec.train.steps)


def test_log_schedule_starts_at_init_ends_at_last_step_and_is_log_spaced():
    steps = ProbeSpec(names=("weights",), points=10).steps(10_000)
    assert steps[0] == 0 and steps[-1] == 10_000 and steps == sorted(set(steps))
    ideal = 10_000 ** (np.arange(11) / 10)  # equal spacing in log step, rounded to whole steps
    assert len(steps) == 12 and np.all(np.abs(np.array(steps[1:]) - ideal) <= 0.5)
    assert ProbeSpec().steps(100) == []  # no probes, no probe steps
    assert ProbeSpec(names=("weights",), schedule="every", every=40).steps(100) == [0, 40, 80, 100]


def test_a_spec_without_probes_keeps_its_identity_and_probes_change_it():
    plain = digits_spec()
    assert "probes" not in json.loads(plain.to_json())  # stores written before probes existed still match
    assert RunSpec.from_dict(json.loads(plain.to_json())).run_id == plain.run_id
    probed = digits_spec(ProbeSpec(names=("weights",)))
    assert probed.run_id != plain.run_id
    assert RunSpec.from_dict(json.loads(probed.to_json())) == probed


def test_stride_runs_a_probe_at_every_kth_probe_step_and_the_last():
    probes = ProbeSpec(names=("weights", "spectra"), schedule="every", every=4, stride={"spectra": 3})
    spec = digits_spec(probes)  # probe steps 0, 4, 8, ..., 28, 30
    rec = MemoryRecorder()
    Trainer(spec, recorder=rec).fit()
    seen = lambda prefix: sorted({s for s, sp, n, _ in rec.rows if sp == "probe" and n.startswith(prefix)})  # noqa: E731
    assert seen("weights/") == [0, 4, 8, 12, 16, 20, 24, 28, 30]
    assert seen("spectra/") == [0, 12, 24, 30]
    assert probes.names_at(12, 30) == ("weights", "spectra") and probes.names_at(13, 30) == ()
    # the spec round-trips, a stride changes the identity, and no stride keeps the old one
    assert RunSpec.from_dict(json.loads(spec.to_json())) == spec
    no_stride = digits_spec(ProbeSpec(names=("weights", "spectra"), schedule="every", every=4))
    assert "stride" not in json.loads(no_stride.to_json())["probes"] and spec.run_id != no_stride.run_id
    with pytest.raises(ConfigError, match="not in probes.names"):
        ProbeSpec(names=("weights",), stride={"hessian": 2})
    with pytest.raises(ConfigError, match="integer >= 1"):
        ProbeSpec(names=("weights",), stride={"weights": 0})


def checked(**probes) -> ProbeSpec:
    """A ProbeSpec as the suite loader and the Trainer take it: plain data, then checked."""
    spec = ProbeSpec(**probes)
    check_probes(spec.names, spec.options)
    return spec


def test_unknown_probe_or_option_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="weights"):
        checked(names=("weight",))
    with pytest.raises(UnknownNameError, match="per_parameter"):
        checked(names=("weights",), options={"weights": {"per_param": False}})
    with pytest.raises(ConfigError, match="not in probes.names"):
        checked(names=("weights",), options={"hessian": {}})
    with pytest.raises(ConfigError, match="schedule"):
        ProbeSpec(names=("weights",), schedule="linear")


@pytest.mark.parametrize("name, options, match", [
    ("hessian", {"budget": 0}, "budget"), ("hessian", {"tol": 0.0}, "tol"), ("hessian", {"tol": "1e-3"}, "tol"),
    ("hessian", {"n_examples": 0}, "n_examples"), ("hessian", {"k": 1.5}, "k"),
    ("hessian", {"k": 3, "max_iter": 2}, "max_iter"), ("hessian", {"k": 101}, "max_iter = 100"),
    ("hessian", {"preconditioned": 1}, "preconditioned"),
    ("ntk", {"method": "fast"}, "structured"), ("ntk", {"n_examples": -1}, "n_examples")])
def test_bad_probe_option_values_fail_when_the_spec_is_built(name, options, match):
    with pytest.raises(ConfigError, match=match):
        checked(names=(name,), options={name: options})


def test_good_probe_option_values_pass():
    checked(names=("hessian", "ntk"), options={"hessian": {"budget": 2, "tol": 1e-2, "k": 3, "max_iter": 3,
                                                            "n_examples": 64, "preconditioned": True},
                                                "ntk": {"method": "auto", "n_examples": 8}})


def test_weights_probe_matches_the_parameters():
    rec = MemoryRecorder()
    trainer = Trainer(digits_spec(ProbeSpec(names=("weights",), schedule="every", every=30)), recorder=rec)
    trainer.fit()
    final = dict((n, v) for s, sp, n, v in rec.rows if sp == "probe" and s == 30)
    total = torch.sqrt(sum(p.detach().double().square().sum() for p in trainer.model.parameters()))
    assert final["weights/norm"] == pytest.approx(total.item(), rel=1e-12)
    assert final["weights/head.weight"] == pytest.approx(trainer.model.head.weight.double().norm().item(), rel=1e-12)


def test_hessian_probe_budget_caps_warm_calls_and_records_residual_and_products():
    rec = MemoryRecorder()
    probes = ProbeSpec(names=("hessian",), schedule="every", every=10, options={"hessian": {"budget": 2}})
    Trainer(digits_spec(probes), recorder=rec).fit()
    by_step: dict[int, dict[str, float]] = {}
    for s, sp, n, v in rec.rows:
        if sp == "probe":
            by_step.setdefault(s, {})[n] = v
    first = by_step[0]
    assert first["hessian/products"] > 2 and first["hessian/residual"] <= 1e-3  # the cold call converges (default tol)
    for step in (10, 20, 30):
        assert by_step[step]["hessian/products"] == 2  # warm calls stop at the budget
        assert by_step[step]["hessian/residual"] > 0
    with pytest.raises(ConfigError, match="budget"):
        Trainer(digits_spec(ProbeSpec(names=("hessian",), options={"hessian": {"budget": 0}}), steps=2)).fit()


def test_dynamics_probe_reads_the_step_gradients():
    rec = MemoryRecorder()
    spec = digits_spec(ProbeSpec(names=("dynamics",), schedule="every", every=30))
    trainer = Trainer(spec, recorder=rec)
    trainer.fit()  # the last step's gradients stay on the parameters
    final = {n: v for s, sp, n, v in rec.rows if sp == "probe" and s == 30}
    total = torch.sqrt(sum(p.grad.double().square().sum() for p in trainer.model.parameters()))
    assert final["dynamics/grad_norm"] == pytest.approx(total.item(), rel=1e-12)
    assert final["dynamics/grad_norm.head"] == pytest.approx(
        torch.sqrt(trainer.model.head.weight.grad.double().square().sum()
                   + trainer.model.head.bias.grad.double().square().sum()).item(), rel=1e-12)
    assert "dynamics/grad_norm" not in {n for s, sp, n, v in rec.rows if sp == "probe" and s == 0}


def test_dynamics_probe_from_one_forward_equals_the_instruments():
    """The probe captures block outputs, attention inputs and pre-activations in one pass; each
    statistic equals the instrument's own (which runs its own pass), on a model with all three."""
    from layerlab.lens import dynamics

    rec = MemoryRecorder()
    spec = seq_spec(ProbeSpec(names=("dynamics",), schedule="every", every=20, batch_size=16))
    trainer = Trainer(spec, recorder=rec)
    trainer.fit()
    got = {n: v for s, sp, n, v in rec.rows if sp == "probe" and s == 20}
    model, inputs = trainer.model, trainer.task.eval_set("val").slice(0, 16).inputs
    blocks = [f"blocks.{i}" for i in range(len(model.blocks))]
    massive = dynamics.block_massive_activations(model, inputs, modules=blocks)
    for b in blocks:
        assert got[f"dynamics/massive_ratio.{b}"] == massive[b]["ratio"]
    entropy = dynamics.attention_entropy(model, inputs)
    assert entropy and all(got[f"dynamics/attention_entropy.{n}"] == h.mean().item() for n, h in entropy.items())
    assert got["dynamics/activation_patterns"] == dynamics.activation_patterns(model, inputs)


@pytest.mark.parametrize("make", [digits_spec, seq_spec])
def test_probes_reading_one_shared_forward_pass_equal_their_own_passes(make):
    from layerlab.lens.probes import PROBES, ProbeContext, ProbeRunner

    trainer = Trainer(make(steps=5))
    trainer.fit()
    names = ("dynamics", "collapse", "similarity")
    options = {"similarity": {"n_examples": 10}}  # a slice of the shared pass against its own smaller one
    runner = ProbeRunner(names, options, trainer.task, batch_size=24, device=torch.device("cpu"),
                         dtype=torch.float32)
    runner(0, trainer.model, lr=1e-3)
    shared = runner(5, trainer.model, lr=1e-3).scalars
    assert shared and {n.split("/")[0] for n in shared} == set(names)
    for name in names:
        ctx = ProbeContext(model=trainer.model, task=trainer.task, batch=runner.batch, step=5, lr=1e-3,
                           state=runner.state[name], load_array=lambda step, key: None,
                           grads={n: p.grad for n, p in trainer.model.named_parameters()})  # no shared pass
        alone = PROBES[name](ctx, **options.get(name, {})).scalars
        assert alone.keys() == {k.split("/", 1)[1] for k in shared if k.startswith(name + "/")}
        for key, value in alone.items():
            assert shared[f"{name}/{key}"] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)


def test_store_keeps_arrays_losslessly_and_forgets_them_on_truncate(tmp_path):
    store = Store(tmp_path)
    spec = digits_spec()
    run_id = store.add_run(spec)
    rec = StoreRecorder(store, run_id)
    a = torch.randn(5, 3, dtype=torch.float64)
    rec.artifact(3, "spectra/esd", a)
    rec.artifact(9, "spectra/esd", a * 2)
    assert torch.equal(rec.load_artifact(3, "spectra/esd"), a)  # bit-exact float64
    assert [r["step"] for r in store.artifacts(run_id)] == [3, 9]
    rec.truncate(5)
    assert rec.load_artifact(9, "spectra/esd") is None and rec.load_artifact(3, "spectra/esd") is not None


def test_probes_resume_after_an_interrupt_exactly(tmp_path):
    spec = digits_spec(ProbeSpec(names=("weights",), schedule="every", every=4))
    ref = MemoryRecorder()
    Trainer(spec, recorder=ref).fit()
    rec, calls = MemoryRecorder(), {"n": 0}

    def stop_after_13() -> bool:
        calls["n"] += 1
        return calls["n"] > 13

    ckpt = tmp_path / "run.pt"
    Trainer(spec, recorder=rec, checkpoint_path=ckpt, should_stop=stop_after_13).fit()
    before, before_by = load_checkpoint(ckpt)["probe_time"], load_checkpoint(ckpt)["probe_times"]
    assert before > 0  # the interrupted part probed at steps 0, 4, 8 and 12
    assert set(before_by) == {"weights"} and 0 < before_by["weights"] <= before
    result = Trainer(spec, recorder=rec, checkpoint_path=ckpt).fit()
    probe_rows = lambda r: sorted(x for x in r.rows if x[1] == "probe")  # noqa: E731
    assert probe_rows(rec) == probe_rows(ref)
    # what the probes cost is reported over the whole run, the interrupted part included
    train = result.results["train"]
    assert train["probe_time_s"] > before
    assert train["probe_overhead"] == pytest.approx(train["probe_time_s"] / result.train_time_s, rel=1e-12)
    assert before_by["weights"] < train["probe_time_s/weights"] <= train["probe_time_s"]
    assert "probe_time_s" not in Trainer(digits_spec(), recorder=MemoryRecorder()).fit().results["train"]


def test_modes_probe_follows_saxe_closed_form_and_leaves_training_alone():
    plain, probed = MemoryRecorder(), MemoryRecorder()
    Trainer(deep_linear_spec(), recorder=plain).fit()
    spec = deep_linear_spec(ProbeSpec(names=("modes",), schedule="every", every=20))
    Trainer(spec, recorder=probed).fit()
    assert curve(probed) == curve(plain)
    probe = {(s, n): v for s, sp, n, v in probed.rows if sp == "probe"}
    # mode 0 (s = 3) rises around step ln(3/u0)/(2*3*0.005) ~ 400 and has settled by step 800
    u0 = [probe[(s, "modes/u.0")] for s in range(0, 801, 20)]
    th0 = [probe[(s, "modes/theory.0")] for s in range(0, 801, 20)]
    assert u0[0] < 1e-3 and u0[-1] == pytest.approx(3.0, rel=1e-3)  # a sigmoidal rise to s
    risen = [(u, t) for u, t in zip(u0, th0) if t > 0.3]
    assert len(risen) >= 5 and max(abs(u - t) / t for u, t in risen) < 0.10  # GD vs flow: O(lr * s) gap
    with pytest.raises(ConfigError, match="linear_teacher"):
        Trainer(digits_spec(ProbeSpec(names=("modes",)))).fit()


def test_spectra_probe_agrees_with_the_instrument():
    from layerlab.lens import spectra

    rec = MemoryRecorder()
    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=64, n_layers=1),
                   train=TrainSpec(steps=2, batch_size=32, eval_every=2), probes=ProbeSpec(names=("spectra",),
                                                                                          schedule="every", every=2))
    trainer = Trainer(spec, recorder=rec)
    trainer.fit()
    got = {n: v for s, sp, n, v in rec.rows if sp == "probe" and s == 2}
    ref = spectra.layer_spectra(trainer.model)
    assert ref, "the test needs a matrix large enough for a power-law fit"
    for name, stats in ref.items():
        for key in ("alpha", "ks_distance", "stable_rank", "effective_rank", "spectral_norm", "n_spikes"):
            assert got[f"spectra/{key}.{name}"] == pytest.approx(stats[key], rel=1e-9), (name, key)
    for name in ref:  # the probe's Gram eigenvalues against the instrument's SVD, within 1e-12·λ_max
        esd = rec.arrays[(2, f"spectra/esd.{name}")]
        exact = spectra.esd(dict(trainer.model.named_parameters())[name].detach(), method="svd").cpu()
        assert esd.shape == exact.shape and float((esd - exact).abs().max()) <= 1e-12 * float(exact.max())


def test_each_probe_and_the_shared_pass_report_their_time():
    spec = digits_spec(ProbeSpec(names=("weights", "dynamics", "collapse"), schedule="every", every=10))
    train = Trainer(spec, recorder=MemoryRecorder()).fit().results["train"]
    parts = {k.split("/", 1)[1]: v for k, v in train.items() if k.startswith("probe_time_s/")}
    assert set(parts) == {"weights", "dynamics", "collapse", "shared_pass"}
    assert all(v > 0 for v in parts.values())
    assert sum(parts.values()) <= train["probe_time_s"]  # the rest is the runner's own work


def test_probe_cost_warning_names_the_costliest_probe_and_the_fix():
    from layerlab.lens.probes import probe_cost_warning

    assert probe_cost_warning({"weights": 1.0}, 1.0, 100.0) is None  # 1% of training
    assert probe_cost_warning({"hessian": 1.0}, 1.0, 0.0) is None  # nothing trained yet
    message = probe_cost_warning({"shared_pass": 0.5, "spectra": 0.5, "hessian": 3.0}, 4.0, 10.0)
    assert "40%" in message and "'hessian' takes 75%" in message and "stride = {hessian = 5}" in message
    assert probe_cost_warning({"weights": 2.0}, 2.0, 10.0, threshold=0.5) is None
    assert probe_cost_warning({"weights": 0.5}, 0.5, 1.0) is None  # 50%, but half a second in all
    assert probe_cost_warning({"weights": 0.5}, 0.5, 1.0, min_seconds=0.1) is not None


def test_a_run_whose_probes_cost_too_much_says_so_once(monkeypatch):
    import time as _time

    from layerlab.lens import probes as probes_module

    weights = probes_module.PROBES["weights"]

    def slow_weights(ctx, **options):  # at least 20 ms a call against ~1 ms training steps
        _time.sleep(0.02)
        return weights(ctx, **options)

    monkeypatch.setitem(probes_module.PROBES, "weights", slow_weights)
    monkeypatch.setattr(probes_module, "PROBE_COST_MIN_SECONDS", 0.05)
    rec = MemoryRecorder()
    with pytest.warns(RuntimeWarning, match="'weights' takes") as caught:
        Trainer(digits_spec(ProbeSpec(names=("weights",), schedule="every", every=2)), recorder=rec).fit()
    assert sum("probes cost" in str(w.message) for w in caught) == 1
    assert sum("probes cost" in e for e in rec.events) == 1
    monkeypatch.setitem(probes_module.PROBES, "weights", weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the cheap probe, rarely: no warning
        Trainer(digits_spec(ProbeSpec(names=("weights",), schedule="every", every=10)),
                recorder=MemoryRecorder()).fit()
