import json

import numpy as np
import pytest
import torch

from layerlab.arena.store import Store, StoreRecorder
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.lens.probes import probe_names
from layerlab.models import ModelSpec
from layerlab.spec import OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import MemoryRecorder, Trainer


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


@pytest.mark.parametrize("make", [digits_spec, seq_spec])
@pytest.mark.parametrize("name", probe_names())
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


def test_unknown_probe_or_option_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="weights"):
        ProbeSpec(names=("weight",))
    with pytest.raises(UnknownNameError, match="per_parameter"):
        ProbeSpec(names=("weights",), options={"weights": {"per_param": False}})
    with pytest.raises(ConfigError, match="not in probes.names"):
        ProbeSpec(names=("weights",), options={"hessian": {}})
    with pytest.raises(ConfigError, match="schedule"):
        ProbeSpec(names=("weights",), schedule="linear")


def test_weights_probe_matches_the_parameters():
    rec = MemoryRecorder()
    trainer = Trainer(digits_spec(ProbeSpec(names=("weights",), schedule="every", every=30)), recorder=rec)
    trainer.fit()
    final = dict((n, v) for s, sp, n, v in rec.rows if sp == "probe" and s == 30)
    total = torch.sqrt(sum(p.detach().double().square().sum() for p in trainer.model.parameters()))
    assert final["weights/norm"] == pytest.approx(total.item(), rel=1e-12)
    assert final["weights/head.weight"] == pytest.approx(trainer.model.head.weight.double().norm().item(), rel=1e-12)


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
    Trainer(spec, recorder=rec, checkpoint_path=ckpt).fit()
    probe_rows = lambda r: sorted(x for x in r.rows if x[1] == "probe")  # noqa: E731
    assert probe_rows(rec) == probe_rows(ref)
