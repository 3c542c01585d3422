"""`train.compile`: the compiled run matches the eager run; a failing compiler falls back to eager."""
import pytest
import torch

from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import Trainer
from layerlab.train import compile as compile_mod
from tests.conftest import skip_without_compiler


def spec(compile: bool, steps: int = 6) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", n_layers=1, d_model=32),
                   train=TrainSpec(steps=steps, eval_every=0, log_every=1, compile=compile), optim=OptimSpec(lr=3e-3))


def losses(trainer: Trainer) -> list[float]:
    return [v for _, v in trainer.recorder.series("train", "loss")]


def test_compile_is_part_of_the_identity_only_when_on():
    off, on = spec(False), spec(True)
    assert "compile" not in off.to_json()  # runs from before the option keep their ids
    assert '"compile":true' in on.to_json().replace(" ", "")
    assert off.run_id != on.run_id


def test_compiled_run_matches_eager_run():
    skip_without_compiler("TorchInductor's CPU kernels")
    torch._dynamo.reset()
    eager, compiled = Trainer(spec(False)), Trainer(spec(True))
    r_eager, r_compiled = eager.fit(), compiled.fit()
    assert compile_mod.is_compiled(compiled.model) and not compile_mod.is_compiled(eager.model)
    assert not any("compile failed" in e for e in compiled.recorder.events)
    torch.testing.assert_close(losses(compiled), losses(eager), rtol=1e-5, atol=1e-6)
    assert r_compiled.results["test"]["loss"] == pytest.approx(r_eager.results["test"]["loss"], rel=1e-5)
    # the state_dict keeps its names, so checkpoints of compiled and eager runs are interchangeable
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()


def test_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(model):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")
        model._compiled_call_impl = fail  # what a compiled call that cannot build its kernels does
    monkeypatch.setattr("layerlab.train.trainer.compile_model", broken_compile)
    eager = Trainer(spec(False))
    eager.fit()
    fallback = Trainer(spec(True))
    with pytest.warns(RuntimeWarning, match="train.compile failed .*no C\\+\\+ compiler found.*training eagerly"):
        fallback.fit()
    assert not compile_mod.is_compiled(fallback.model)
    assert any("train.compile failed (RuntimeError)" in e for e in fallback.recorder.events)
    assert losses(fallback) == losses(eager)  # the failed call changed nothing: same curve, bit for bit
