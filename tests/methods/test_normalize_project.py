"""Normalize-and-Project: norms held at their initial values, norms before nonlinearities,
composition with another method, resume on the non-stationary permuted_digits task."""
import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, MethodStack, RunContext, check_methods
from layerlab.methods.normalize_project import project_to_norms
from layerlab.models import build_model
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer
from layerlab.train.recorder import MemoryRecorder
from tests.conftest import kill_and_resume

MODEL = ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=2)


def run_context(steps=100):
    return RunContext(seed=0, steps=steps, device=torch.device("cpu"), dtype=torch.float64,
                      loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind="vector", n_outputs=10)


def setup_model(methods=(("normalize_project", {}),)):
    task = build_task("digits")
    torch.manual_seed(0)
    model = build_model(MODEL, task).double()
    stack = MethodStack.build(list(methods))
    stack.setup(model, run_context())
    return task, model, stack


def test_registered_with_its_paper():
    entry = METHODS.entry("normalize_project")
    assert entry.paper.arxiv == "2407.01800" and "2407.01800" in entry.cls.__doc__


def test_after_every_step_each_weight_has_its_initial_norm_float64():
    task, model, stack = setup_model()
    nap = stack.methods[0]
    initial = {n: torch.linalg.vector_norm(p.detach()).item() for n, p in model.named_parameters()}
    assert "head.weight" not in nap.names and "proj.weight" in nap.names
    assert {n for n in nap.names} == {n for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("head")}
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for step in range(12):
        b = task.train_batch(32, g)
        loss = F.cross_entropy(model(b.inputs.double()), b.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        moved = {n: torch.linalg.vector_norm(p.detach()).item() for n, p in model.named_parameters()}
        assert any(abs(moved[n] - initial[n]) > 1e-3 * initial[n] for n in nap.names)  # the step changed norms
        stack.after_step(model, step)
        for n, p in model.named_parameters():
            now = torch.linalg.vector_norm(p.detach()).item()
            if n in nap.names:
                assert abs(now - initial[n]) <= 1e-12 * initial[n], (step, n)
    # vectors (biases, norm gains) and the head are free: they moved
    assert abs(torch.linalg.vector_norm(model.head.weight).item() - initial["head.weight"]) > 1e-3


def test_fast_projection_equals_the_reference():
    _, model, stack = setup_model()
    nap = stack.methods[0]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for w in nap.weights:
            w.mul_(1 + torch.rand((), generator=g, dtype=torch.float64)).add_(
                0.1 * torch.randn(w.shape, generator=g, dtype=torch.float64))
    ref = [w.detach().clone() for w in nap.weights]
    project_to_norms(ref, nap.norms)
    stack.after_step(model, 0)
    for a, b in zip(nap.weights, ref):
        assert (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item() <= 1e-10
    # float32 against the float64 reference
    w32 = [w.detach().float().clone() for w in ref]
    for w in w32:
        w.mul_(1.7)
    project_to_norms(w32, nap.norms)
    for w, n0 in zip(w32, nap.norms):
        assert abs(torch.linalg.vector_norm(w.double()).item() / n0.item() - 1) <= 1e-4


def test_a_layernorm_precedes_every_mlp_nonlinearity():
    task, model, _ = setup_model()
    seen = []
    for block in (layer.f for layer in model.layers):
        block.act.act.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    x = task.eval_set("val").inputs[:9].double()
    model(x)
    assert len(seen) == 2
    for z in seen:  # the activation's input is normalized per row: mean 0, variance 1 (gain 1, bias 0 at init)
        torch.testing.assert_close(z.mean(-1), torch.zeros(9, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(z.var(-1, unbiased=False), torch.ones(9, dtype=torch.float64), atol=1e-4, rtol=0)


def test_project_head_option_and_strictness():
    _, _, stack = setup_model((("normalize_project", {"project_head": True, "normalize": False}),))
    assert "head.weight" in stack.methods[0].names
    with pytest.raises(ConfigError, match="normalize must be true or false"):
        check_methods([("normalize_project", {"normalize": 1})])
    with pytest.raises(ConfigError, match="no MLP block"):
        task = build_task("digits")
        model = build_model(ModelSpec(backbone="classifier", channel="swiglu", d_model=16, n_layers=1), task)
        MethodStack.build([("normalize_project", {})]).setup(model, run_context())


def nap_spec(methods, steps=60):
    return RunSpec(task=TaskSpec("permuted_digits", {"phases": 4, "phase_steps": 15}),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(lr=1e-2, schedule="constant"),
                   train=TrainSpec(steps=steps, batch_size=16, eval_every=10, log_every=1, dtype="float64"),
                   seed=1, methods=tuple(methods))


def losses(rec):
    return [v for _, v in rec.series("train", "loss")]


def test_composes_with_another_method_and_resumes_after_a_kill(tmp_path):
    both = [MethodSpec("gradient_noise", {"eta": 0.01}), MethodSpec("normalize_project", {})]
    nap_only = MemoryRecorder()
    Trainer(nap_spec(both[1:]), recorder=nap_only).fit()
    ref = MemoryRecorder()
    trainer = Trainer(nap_spec(both), recorder=ref)
    trainer.fit()
    assert losses(ref) != losses(nap_only)  # the noise acted
    nap = trainer.methods.methods[1]
    for w, n0 in zip(nap.weights, nap.norms):  # and the projection held, after the noisy steps
        assert abs(torch.linalg.vector_norm(w.detach()).item() - n0.item()) <= 1e-12 * n0.item()

    rec, _ = kill_and_resume(nap_spec(both), tmp_path / "run.pt", kill_at=37)  # between checkpoints (every 10 steps), in phase 2 of 4
    assert losses(rec) == losses(ref)
