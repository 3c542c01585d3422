"""PS-KD: the soft-target loss, the α schedule, the epoch snapshots, and exact resume."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, build_method, check_methods
from layerlab.methods.base import RunContext
from layerlab.methods.pskd import PSKD, alpha_at
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks.base import Batch
from layerlab.train import MemoryRecorder, Trainer
from tests.conftest import kill_and_resume


def run_context(steps=100, input_kind="vector"):
    return RunContext(seed=0, steps=steps, device=torch.device("cpu"), dtype=torch.float64,
                      loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind=input_kind, n_outputs=5)


def attached(model, steps=100, **options) -> PSKD:
    m = build_method("pskd", **options)
    m.attach(run_context(steps), 0)
    m.setup(model, run_context(steps))
    return m


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()


def test_registered_with_its_paper_and_strict_options():
    entry = METHODS.entry("pskd")
    assert entry.paper.arxiv == "2006.12000" and "2006.12000" in entry.cls.__doc__
    assert "Progressive Refinement of Targets" in " ".join(entry.cls.__doc__.split())
    for bad, match in (({"alpha_T": 1.5}, "alpha_T must be a number in"), ({"alpha_T": -0.1}, "alpha_T"),
                       ({"epoch_steps": 0}, "epoch_steps must be an integer >= 1"),
                       ({"epoch_steps": 2.5}, "epoch_steps"), ({"alpha_T": True}, "alpha_T")):
        with pytest.raises(ConfigError, match=match):
            check_methods([("pskd", bad)])
    with pytest.raises(ConfigError, match="unknown option"):
        build_method("pskd", alpha=0.5)


def test_alpha_grows_linearly_with_the_epoch_to_alpha_T():
    m = attached(small_model(), steps=95, alpha_T=0.6, epoch_steps=10)  # T = ceil(95 / 10) = 10 epochs
    assert m.epochs == 10
    assert [m.epoch(s) for s in (0, 9, 10, 19, 94)] == [1, 1, 2, 2, 10]
    for s in range(95):
        t = s // 10 + 1
        assert m.alpha(s) == pytest.approx(0.6 * t / 10, abs=1e-15)
    assert m.alpha(94) == pytest.approx(0.6) and alpha_at(0, 10, 0.6) == 0.0


def test_the_snapshot_is_taken_at_each_epoch_end_and_only_there():
    model = small_model()
    m = attached(model, epoch_steps=3)
    assert not m.has_teacher and m.teacher_probs(torch.randn(2, 6, dtype=torch.float64)) is None
    for step in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        before = [p.clone() for p in m.teacher.parameters()]
        m.after_step(model, step)
        now = list(m.teacher.parameters())
        if (step + 1) % 3 == 0:
            assert all(torch.equal(a, b) for a, b in zip(now, model.parameters()))
        else:
            assert all(torch.equal(a, b) for a, b in zip(now, before))
    assert m.has_teacher and not any(p.requires_grad for p in m.teacher.parameters())


def test_soft_target_loss_equals_the_formula():
    model = small_model()
    m = attached(model, steps=100, alpha_T=0.8, epoch_steps=10)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (9,), generator=gen)
    batch = Batch(x, y)
    # epoch 1: no teacher, the target is the one-hot label: the plain cross-entropy
    out = model(x)
    assert m.transform_loss(torch.tensor(0.0), out, batch, 0).item() == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-12)
    m.after_step(model, 9)  # end of epoch 1: snapshot
    teacher = small_model()
    teacher.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():  # the student moves on; the teacher stays
            p.mul_(1.3)
    step = 37  # epoch 4 of 10: α = 0.8 * 4 / 10
    alpha = 0.8 * 4 / 10
    out = model(x)
    p_teacher = torch.softmax(teacher(x), -1).detach()
    target = (1 - alpha) * F.one_hot(y, 5).double() + alpha * p_teacher
    expected = -(target * torch.log_softmax(out, -1)).sum(-1).mean()
    got = m.transform_loss(torch.tensor(0.0), out, batch, step)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert not math.isclose(got.item(), F.cross_entropy(out, y).item(), rel_tol=1e-3)
    # the gradient reaches only the student
    got.backward()
    assert all(p.grad is not None for p in model.parameters()) and all(p.grad is None for p in m.teacher.parameters())


def test_masked_token_targets_count_only_scored_positions():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 5)

        def forward(self, x):
            return self.emb(x)

    torch.manual_seed(1)
    model = Tokens().double()
    m = build_method("pskd", alpha_T=0.5, epoch_steps=1)
    m.attach(run_context(4, "tokens"), 0)
    m.setup(model, run_context(4, "tokens"))
    m.after_step(model, 0)
    with torch.no_grad():
        model.emb.weight.add_(torch.randn_like(model.emb.weight))
    x = torch.randint(0, 7, (3, 6))
    y = torch.randint(0, 5, (3, 6))
    mask = torch.rand(3, 6) < 0.5
    mask[0, 0] = True
    out = model(x)
    alpha = 0.5 * 2 / 4
    target = (1 - alpha) * F.one_hot(y, 5).double() + alpha * torch.softmax(m.teacher(x), -1)
    expected = -(target[mask] * torch.log_softmax(out[mask], -1)).sum(-1).mean()
    got = m.transform_loss(torch.tensor(0.0), out, Batch(x, y, mask), 1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def digits_spec(methods, steps=60):
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=32, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=5),
                   train=TrainSpec(steps=steps, batch_size=32, eval_every=20, log_every=1), seed=3, methods=methods)


def losses(rec):
    return [v for _, v in rec.series("train", "loss")]


def test_resume_after_a_kill_gives_an_identical_loss_curve(tmp_path):
    """Checkpoints at steps 20 and 40 fall inside epochs (epoch_steps 7): the snapshot must travel."""
    spec = digits_spec((MethodSpec("pskd", {"alpha_T": 0.8, "epoch_steps": 7}),))
    ref = MemoryRecorder()
    Trainer(spec, recorder=ref).fit()
    plain = MemoryRecorder()
    Trainer(dataclasses.replace(spec, methods=()), recorder=plain).fit()
    assert losses(ref)[:7] == pytest.approx(losses(plain)[:7], rel=1e-6)  # epoch 1: the one-hot targets
    assert losses(ref)[10:] != pytest.approx(losses(plain)[10:], rel=1e-3)  # then the method changes training
    rec, saved = kill_and_resume(spec, tmp_path / "run.pt", kill_at=47)
    assert saved["step"] == 40
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))
