import dataclasses
import math

import pytest
import torch

from layerlab.errors import ConfigError, UnknownNameError
from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import MemoryRecorder, Trainer
from layerlab.train.optim import lr_at
from tests.conftest import kill_and_resume


def digits_spec(**train) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=32, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=5),
                   train=TrainSpec(**{"steps": 60, "batch_size": 32, "eval_every": 20, "log_every": 1, **train}),
                   seed=3)


def seq_spec(**train) -> RunSpec:
    return RunSpec(task=TaskSpec("modular", {"p": 11, "train_fraction": 0.6}),
                   model=ModelSpec(d_model=16, n_layers=1, mixer_options={"n_heads": 2}),
                   optim=OptimSpec(lr=3e-3), train=TrainSpec(**{"steps": 30, "batch_size": 16, "eval_every": 10,
                                                                "log_every": 1, **train}), seed=1)


def test_unknown_probe_fails_before_the_task_is_built_or_anything_trains():
    class NoTask:  # the Trainer must fail before it looks at the task
        def __getattr__(self, name):
            raise AssertionError(f"the task was used ({name})")

    spec = RunSpec(task=TaskSpec("digits"), probes=ProbeSpec(names=("weight",)))  # plain data: accepted
    rec = MemoryRecorder()
    with pytest.raises(UnknownNameError, match=r"unknown probe 'weight'; did you mean 'weights'"):
        Trainer(spec, task=NoTask(), recorder=rec)
    with pytest.raises(ConfigError, match="hessian.k"):
        Trainer(RunSpec(task=TaskSpec("digits"), probes=ProbeSpec(names=("hessian",), options={"hessian": {"k": 0}})))
    assert rec.rows == []


def losses(rec: MemoryRecorder) -> list[float]:
    return [v for _, v in rec.series("train", "loss")]


@pytest.mark.parametrize("make", [digits_spec, seq_spec])
def test_same_spec_same_loss_curve(make):
    curves = []
    for _ in range(2):
        rec = MemoryRecorder()
        Trainer(make(), recorder=rec).fit()
        curves.append(losses(rec))
    assert len(curves[0]) == make().train.steps
    assert curves[0] == curves[1]  # bit-identical on the CPU


def test_training_learns_digits():
    rec = MemoryRecorder()
    res = Trainer(digits_spec(steps=150), recorder=rec).fit()
    assert res.status == "done" and res.steps == 150
    assert res.results["test"]["accuracy"] > 0.85
    assert losses(rec)[-1] < losses(rec)[0] / 3
    assert set(res.results) >= {"val", "test", "train"}


def test_caller_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer(digits_spec(steps=5)).fit()
    assert torch.equal(torch.rand(3), expected)


def test_resume_after_interrupt_gives_identical_curve(tmp_path):
    ref = MemoryRecorder()
    Trainer(digits_spec(), recorder=ref).fit()

    ckpt = tmp_path / "run.pt"
    rec = MemoryRecorder()
    calls = {"n": 0}

    def stop_after_25() -> bool:
        calls["n"] += 1
        return calls["n"] > 25

    first = Trainer(digits_spec(), recorder=rec, checkpoint_path=ckpt, should_stop=stop_after_25).fit()
    assert first.status == "interrupted" and first.steps == 25
    second = Trainer(digits_spec(), recorder=rec, checkpoint_path=ckpt).fit()
    assert second.status == "done"
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))  # no duplicated step
    assert any("resumed from checkpoint at step 25" in e for e in rec.events)


def test_resume_from_periodic_checkpoint_after_kill(tmp_path):
    """A process killed between checkpoints resumes from the last one and logs each step once."""
    ref = MemoryRecorder()
    Trainer(digits_spec(), recorder=ref).fit()
    rec, saved = kill_and_resume(digits_spec(), tmp_path / "run.pt", kill_at=47)
    assert saved["step"] == 40  # eval_every = 20 -> checkpoints at 20, 40
    assert losses(rec) == losses(ref)


def test_corrupt_checkpoint_restarts_from_scratch(tmp_path):
    ckpt = tmp_path / "run.pt"
    ckpt.write_bytes(b"this is not a checkpoint")
    rec = MemoryRecorder()
    res = Trainer(digits_spec(steps=10), recorder=rec, checkpoint_path=ckpt).fit()
    assert res.status == "done" and res.steps == 10
    assert any("corrupt" in e and "from scratch" in e for e in rec.events)
    ref = MemoryRecorder()
    Trainer(digits_spec(steps=10), recorder=ref).fit()
    assert losses(rec) == losses(ref)


def test_divergence_is_detected_with_its_step():
    # a deep linear network has no normalization to stop SGD with a large step from blowing up
    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="deep_linear", d_model=32, n_layers=3),
                   optim=OptimSpec(name="sgd", lr=100.0, grad_clip=None, momentum=0.0),
                   train=TrainSpec(steps=50, batch_size=32, log_every=10, eval_every=0))
    rec = MemoryRecorder()
    res = Trainer(spec, recorder=rec).fit()
    assert res.status == "diverged"
    assert res.diverged_step is not None and 1 <= res.diverged_step <= 10
    assert res.results == {}


def test_target_stops_early():
    res = Trainer(digits_spec(steps=400, eval_every=10, target=0.5)).fit()
    assert res.stop_reason == "target" and res.steps < 400
    assert res.results["val"]["accuracy"] >= 0.5


def test_lr_schedule_warmup_then_cosine():
    spec = OptimSpec(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 100, spec) == pytest.approx(0.1)
    assert lr_at(9, 100, spec) == pytest.approx(1.0)
    assert lr_at(10, 100, spec) == pytest.approx(1.0)
    assert lr_at(55, 100, spec) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert lr_at(100, 100, spec) == pytest.approx(0.1)
    assert lr_at(50, 100, OptimSpec(lr=0.5, schedule="constant")) == 0.5


def test_float64_training_runs_in_float64():
    t = Trainer(digits_spec(steps=3, dtype="float64"))
    res = t.fit()
    assert res.status == "done"
    assert all(p.dtype == torch.float64 for p in t.model.parameters())
    assert math.isfinite(res.results["test"]["loss"])


def test_time_budget_stops_at_the_next_evaluation():
    res = Trainer(digits_spec(steps=400, eval_every=5, time_budget_s=1e-9)).fit()
    assert res.stop_reason == "time budget" and res.steps == 5
    assert res.status == "done" and "test" in res.results


def test_results_carry_memory_and_inference_state():
    seq = Trainer(seq_spec(steps=5), recorder=MemoryRecorder()).fit().results["train"]
    assert seq["peak_memory_mb"] > 0
    assert seq["state_size"] == 1 * 2 * 4 * 16  # one attention layer's KV cache at length 4, width 16
    vec = Trainer(digits_spec(steps=5), recorder=MemoryRecorder()).fit().results["train"]
    assert vec["peak_memory_mb"] > 0 and "state_size" not in vec


# ---- training methods (issue 15) -------------------------------------------------------------
from layerlab.methods.base import method_seed  # noqa: E402
from layerlab.methods.orthograd import orthogonal_gradient  # noqa: E402
from layerlab.models import build_model  # noqa: E402
from layerlab.spec import MethodSpec  # noqa: E402
from layerlab.tasks import build_task  # noqa: E402
from layerlab.train.trainer import DATA_SEED_SALT  # noqa: E402


def method_spec(methods, **train) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(name="sgd", lr=0.5, momentum=0.0, grad_clip=None, schedule="constant"),
                   train=TrainSpec(**{"steps": 1, "batch_size": 32, "eval_every": 0, "log_every": 1,
                                      "dtype": "float64", **train}),
                   seed=4, methods=methods)


def _one_sgd_step_gradient(methods):
    """The gradient the optimizer applied in a one-step SGD run: (theta_0 - theta_1) / lr."""
    spec = method_spec(methods)
    trainer = Trainer(spec)
    trainer.fit()
    task = build_task("digits")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task).double()
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = task.train_batch(32, torch.Generator().manual_seed(spec.seed ^ DATA_SEED_SALT))
    task.loss(model(batch.inputs.double()), batch).backward()
    raw = {n: p.grad for n, p in model.named_parameters()}
    applied = {n: (theta0[n] - p.detach()) / spec.optim.lr for n, p in trainer.model.named_parameters()}
    return theta0, raw, applied


def test_two_methods_compose_in_the_order_the_run_lists_them():
    noise = MethodSpec("gradient_noise", {"eta": 0.01})
    sigma = math.sqrt(0.01)  # sigma_0^2 = eta / (1 + 0)^gamma
    # [orthograd, gradient_noise]: the applied gradient is the orthogonal gradient plus the noise
    theta0, raw, applied = _one_sgd_step_gradient((MethodSpec("orthograd"), noise))
    gen = torch.Generator().manual_seed(method_seed(4, 1, "gradient_noise"))
    for n in theta0:  # parameters() order, as the method draws
        expected = orthogonal_gradient(theta0[n], raw[n]) + sigma * torch.randn(raw[n].shape, generator=gen,
                                                                                dtype=torch.float64)
        assert (applied[n] - expected).abs().max() <= 1e-9 * (1 + expected.abs().max()), n
    # [gradient_noise, orthograd]: the noisy gradient is projected, so the step is orthogonal to each weight
    theta0, raw, applied = _one_sgd_step_gradient((noise, MethodSpec("orthograd")))
    for n, w in theta0.items():
        if w.norm() > 0:
            cos = torch.dot(w.flatten(), applied[n].flatten()) / (w.norm() * applied[n].norm())
            assert abs(cos) < 1e-9, n


def test_methods_are_part_of_the_run_id_in_order_and_with_options():
    plain = method_spec(())
    a = method_spec((MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.3})))
    b = method_spec((MethodSpec("gradient_noise", {"eta": 0.3}), MethodSpec("orthograd")))
    c = method_spec((MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.01})))
    assert len({plain.run_id, a.run_id, b.run_id, c.run_id}) == 4
    inline = method_spec([{"name": "orthograd"}, {"name": "gradient_noise", "eta": 0.3}])
    assert inline.run_id == a.run_id and RunSpec.from_dict(__import__("json").loads(a.to_json())).run_id == a.run_id
    assert "methods" not in plain.to_json()


def test_unknown_method_fails_before_training():
    rec = MemoryRecorder()
    with pytest.raises(UnknownNameError, match="did you mean 'mixup'"):
        Trainer(method_spec((MethodSpec("mixupp"),)), recorder=rec)
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        Trainer(method_spec((MethodSpec("mixup", {"alpa": 1.0}),)), recorder=rec)
    assert rec.rows == []


def test_run_with_methods_resumes_after_a_kill_with_an_identical_loss_curve(tmp_path):
    """Every stateful hook (noise and mixup streams) continues from the checkpoint, not from its seed."""
    methods = (MethodSpec("mixup", {"alpha": 0.4}), MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.01}))
    spec = dataclasses.replace(digits_spec(), methods=methods)
    ref = MemoryRecorder()
    Trainer(spec, recorder=ref).fit()
    assert losses(ref) != losses_of(digits_spec())  # the methods change training
    rec, saved = kill_and_resume(spec, tmp_path / "run.pt", kill_at=47)
    assert saved["step"] == 40
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))


def losses_of(spec: RunSpec) -> list[float]:
    rec = MemoryRecorder()
    Trainer(spec, recorder=rec).fit()
    return losses(rec)
