"""Seeds at once (layerlab.train.seed_group): a vmapped group of seeds trains each seed as its own
Trainer would, to float tolerance; checkpoints are interchangeable; what it cannot batch it trains
separately, saying why."""
import dataclasses

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import MemoryRecorder, Trainer
from layerlab.train.optim import build_optimizer
from layerlab.train.seed_group import SeedGroupTrainer, _Stack, group_loss, unsupported_reason
from layerlab.models import build_model

SEEDS = (0, 1, 2)


def digits(seed: int, dtype: str = "float64", **train) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="swiglu", d_model=16, n_layers=1),
                   optim=OptimSpec(lr=1e-2, warmup_steps=3, weight_decay=0.1, grad_clip=0.5),
                   train=TrainSpec(**{"steps": 16, "batch_size": 32, "eval_every": 8, "log_every": 1,
                                      "dtype": dtype, **train}), seed=seed)


def parity(seed: int, dtype: str = "float64", **train) -> RunSpec:
    return RunSpec(task=TaskSpec("parity", {"length": 8, "n_eval": 64}),
                   model=ModelSpec(d_model=16, n_layers=1, mixer_options={"n_heads": 2}),
                   optim=OptimSpec(lr=3e-3, weight_decay=0.01),
                   train=TrainSpec(**{"steps": 12, "batch_size": 16, "eval_every": 6, "log_every": 1,
                                      "dtype": dtype, **train}), seed=seed)


def curve(rec: MemoryRecorder, split: str = "train", name: str = "loss") -> list[float]:
    return [v for _, v in rec.series(split, name)]


def separately(specs):
    out = []
    for spec in specs:
        rec = MemoryRecorder()
        trainer = Trainer(spec, recorder=rec)
        out.append((rec, trainer.fit(), trainer.model))
    return out


def as_group(specs, **kw):
    recs = [MemoryRecorder() for _ in specs]
    group = SeedGroupTrainer(specs, recorders=recs, **kw)
    return recs, group.fit(), group


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("make", [digits, parity])
@pytest.mark.parametrize("dtype,tol,seeds", [("float64", 1e-10, SEEDS), ("float32", 1e-4, SEEDS[:2])])
def test_group_equals_separate_runs(make, dtype, tol, seeds):
    specs = [make(s, dtype) for s in seeds]
    ref = separately(specs)
    recs, results, group = as_group(specs)
    assert group.fallback_reason is None
    for (rrec, rres, rmodel), rec, res, member in zip(ref, recs, results, group.members):
        assert f"trained as one vmapped group with seeds {', '.join(map(str, seeds))}" in rec.events
        a, b = torch.tensor(curve(rec), dtype=torch.float64), torch.tensor(curve(rrec), dtype=torch.float64)
        assert len(a) == specs[0].train.steps
        # the logged loss goes through float32: the curves agree to its rounding in float64
        assert (a - b).abs().max().item() <= max(tol, 2e-7) * b.abs().max().item()
        assert curve(rec, "val", "loss") == pytest.approx(curve(rrec, "val", "loss"), rel=max(tol, 1e-9))
        for (name, p), (_, q) in zip(member.model.named_parameters(), rmodel.named_parameters()):
            assert p.dtype == getattr(torch, dtype)
            assert rel_err(p.detach(), q.detach()) <= tol, name
        assert (res.status, res.steps, res.stop_reason, res.n_params) == (rres.status, rres.steps, rres.stop_reason,
                                                                          rres.n_params)
        assert res.results.keys() == rres.results.keys()
        assert res.results["test"] == pytest.approx(rres.results["test"], rel=max(tol, 1e-9))
    # the seeds really differ (a group of copies would pass the above trivially)
    assert curve(recs[0]) != curve(recs[1])


@pytest.mark.parametrize("name,extra", [("adamw", {"weight_decay": 0.1}),
                                        ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
                                        ("sgd", {"momentum": 0.0, "weight_decay": 0.0})])
def test_one_optimizer_over_stacked_tensors_equals_one_per_seed(name, extra):
    """AdamW and SGD are elementwise: stepping the stacked tensors equals stepping each seed's own
    optimizer (built by build_optimizer, with its weight-decay groups), and the stacked state sliced
    is each seed's optimizer state dict."""
    spec = dataclasses.replace(digits(0), optim=OptimSpec(name=name, lr=0.05, **extra))
    task = build_task("digits")
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(build_model(spec.model, task).double())
    stack = _Stack(models, spec)
    own = [build_optimizer(m, spec.optim) for m in models]
    assert [len(g["params"]) for g in own[0].param_groups] == [len(g) for g in stack.groups]
    assert {g["weight_decay"] for g in own[0].param_groups} == ({extra["weight_decay"], 0.0})
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        for n, p in stack.params.items():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        for k, m in enumerate(models):
            for n, p in m.named_parameters():
                p.grad = stack.params[n].grad[k].clone()
        stack.optimizer.step()
        for o in own:
            o.step()
    for k, m in enumerate(models):
        for n, p in m.named_parameters():
            assert rel_err(stack.params[n][k].detach(), p.detach()) <= 1e-13, n
        mine, theirs = stack.optimizer_state(k), own[k].state_dict()
        assert mine["param_groups"] == theirs["param_groups"]
        assert mine["state"].keys() == theirs["state"].keys()
        for idx, entry in theirs["state"].items():
            assert mine["state"][idx].keys() == entry.keys()
            for key, v in entry.items():
                if isinstance(v, torch.Tensor):
                    assert mine["state"][idx][key].shape == v.shape
                    assert torch.allclose(mine["state"][idx][key], v, rtol=1e-13, atol=0), (idx, key)
                else:
                    assert mine["state"][idx][key] == v


def test_masked_loss_equals_the_task_loss():
    task = build_task("mqar", vocab=32, length=16, pairs=3)
    batch = task.train_batch(8, torch.Generator().manual_seed(0))
    logits = torch.randn(*batch.targets.shape, task.n_outputs, dtype=torch.float64)
    assert batch.mask is not None and 0 < batch.mask.sum() < batch.mask.numel()
    assert abs(group_loss(task, logits, batch).item() - task.loss(logits, batch).item()) <= 1e-12


def test_each_seed_stops_at_its_own_target_step():
    specs = [digits(s, steps=30, eval_every=5, log_every=5, target=0.81) for s in SEEDS]
    ref = separately(specs)
    steps = [r.steps for _, r, _ in ref]
    reasons = [r.stop_reason for _, r, _ in ref]
    assert len(set(steps)) >= 2 and "target" in reasons, f"the target should stop the seeds at different steps, " \
                                                         f"got {steps}, {reasons}"
    recs, results, group = as_group(specs)
    assert group.fallback_reason is None
    for (rrec, rres, _), rec, res in zip(ref, recs, results):
        assert (res.steps, res.stop_reason, res.status) == (rres.steps, rres.stop_reason, rres.status)
        assert len(curve(rec)) == len(curve(rrec))
        assert curve(rec, "val", "accuracy") == curve(rrec, "val", "accuracy")
        assert res.results["test"] == pytest.approx(rres.results["test"], rel=1e-9)


class Killed(Exception):
    pass


def test_kill_and_resume_a_group_and_swap_loops(tmp_path):
    """A killed group resumes to the same curves; a group's checkpoints resume in the plain Trainer,
    and the Trainer's in a group (the checkpoint format is one)."""
    specs = [digits(s, steps=16, eval_every=8, log_every=1) for s in (0, 1)]
    ref = separately(specs)

    def die(step, total):
        if step == 11:
            raise Killed

    paths = [tmp_path / f"g{s.seed}.pt" for s in specs]
    recs = [MemoryRecorder() for _ in specs]
    with pytest.raises(Killed):
        SeedGroupTrainer(specs, recorders=recs, checkpoint_paths=paths, on_progress=[die, None]).fit()
    saved = [torch.load(p, weights_only=False) for p in paths]
    assert [s["step"] for s in saved] == [8, 8]
    # the checkpoint is the Trainer's: same keys, and the same torch RNG state a Trainer would save
    plain = tmp_path / "plain.pt"
    with pytest.raises(Killed):
        Trainer(specs[0], checkpoint_path=plain, on_progress=die).fit()
    theirs = torch.load(plain, weights_only=False)
    assert saved[0].keys() == theirs.keys()
    assert torch.equal(saved[0]["torch_rng"], theirs["torch_rng"])
    assert torch.equal(saved[0]["data_rng"], theirs["data_rng"])
    assert saved[0]["optimizer"]["param_groups"] == theirs["optimizer"]["param_groups"]

    SeedGroupTrainer(specs, recorders=recs, checkpoint_paths=paths).fit()
    for rec, (rrec, _, _) in zip(recs, ref):
        assert any("resumed from checkpoint at step 8" in e for e in rec.events)
        assert curve(rec) == pytest.approx(curve(rrec), rel=2e-7)
        assert len(curve(rec)) == 16

    # the group's (periodic) checkpoint resumed by the plain Trainer, the Trainer's by a group
    paths2 = [tmp_path / f"h{s.seed}.pt" for s in specs]
    recs2 = [MemoryRecorder() for _ in specs]
    with pytest.raises(Killed):
        SeedGroupTrainer(specs, recorders=recs2, checkpoint_paths=paths2, on_progress=[die, None]).fit()
    Trainer(specs[0], recorder=recs2[0], checkpoint_path=paths2[0]).fit()
    assert curve(recs2[0]) == pytest.approx(curve(ref[0][0]), rel=2e-7)
    paths3 = [tmp_path / f"t{s.seed}.pt" for s in specs]
    recs3 = [MemoryRecorder() for _ in specs]
    for spec, path, rec in zip(specs, paths3, recs3):
        with pytest.raises(Killed):
            Trainer(spec, recorder=rec, checkpoint_path=path, on_progress=die).fit()
    group = SeedGroupTrainer(specs, recorders=recs3, checkpoint_paths=paths3)
    group.fit()
    assert group.fallback_reason is None
    for rec, (rrec, _, _) in zip(recs3, ref):
        assert curve(rec) == pytest.approx(curve(rrec), rel=2e-7)


def test_checkpoints_at_different_steps_train_separately(tmp_path):
    specs = [digits(s, steps=10, eval_every=4, log_every=1) for s in (0, 1)]
    paths = [tmp_path / f"{s.seed}.pt" for s in specs]

    def die_at(k):
        def die(step, total):
            if step == k:
                raise Killed
        return die

    for spec, path, k in zip(specs, paths, (5, 9)):
        with pytest.raises(Killed):
            Trainer(spec, checkpoint_path=path, on_progress=die_at(k)).fit()
    recs = [MemoryRecorder() for _ in specs]
    group = SeedGroupTrainer(specs, recorders=recs, checkpoint_paths=paths)
    results = group.fit()
    assert group.fallback_reason == "the seeds' checkpoints are at different steps (seed 0: 4, seed 1: 8)"
    assert all(f"trained separately: {group.fallback_reason}" in rec.events for rec in recs)
    assert [r.steps for r in results] == [10, 10]


class ItemLossDigits:
    """A digits task whose loss reads a value out of a tensor (.item()), which vmap cannot batch."""

    def __new__(cls):
        task = build_task("digits")
        base = type(task)

        class Task(base):
            def loss(self, logits, batch):
                return base.loss(self, logits, batch) * (1.0 + 0.0 * logits.sum().item())

        task.__class__ = Task
        return task


DROPOUT = ModelSpec(d_model=16, n_layers=1, mixer_options={"n_heads": 2, "dropout": 0.1})


@pytest.mark.parametrize("change,why", [
    (dict(methods=(MethodSpec("orthograd"),)), "training methods (orthograd) hook into one model's loop"),
    (dict(probes=ProbeSpec(names=("weights",))), "probes look at one model at a time"),
    (dict(model=DROPOUT), "the model is stochastic in training (dropout p > 0 in blocks.0.mixer.f.dropout)"),
    (dict(train=TrainSpec(dtype="float32", steps=3)), None),
])
def test_unsupported_reason(change, why):
    assert unsupported_reason([dataclasses.replace(parity(s), **change) for s in (0, 1)]) == why


@pytest.mark.parametrize("model,why", [
    (DROPOUT, "the model is stochastic in training (dropout p > 0 in "),
    (ModelSpec(d_model=16, n_layers=1, mixer_options={"n_heads": 2}, norm="evonorm_b0"),
     "the model updates its buffers in training ("),  # found by the trial step, not from the spec
])
def test_unsupported_specs_train_separately_with_their_reason(model, why):
    specs = [dataclasses.replace(parity(s, "float32", steps=4, eval_every=4), model=model) for s in (0, 1)]
    ref = separately(specs)
    recs, results, group = as_group(specs)
    assert group.fallback_reason.startswith(why)
    for rec, res, (rrec, rres, _) in zip(recs, results, ref):
        assert rec.events[0] == f"trained separately: {group.fallback_reason}"
        assert curve(rec) == curve(rrec)  # the plain Trainer did the training
        assert res.results["test"] == rres.results["test"]


def test_an_op_vmap_cannot_batch_falls_back_at_the_first_step():
    specs = [digits(s, "float32", steps=3, eval_every=3) for s in (0, 1)]
    recs, results, group = as_group(specs, task=ItemLossDigits())
    assert group.fallback_reason.startswith("vmap failed on the first step (")
    assert all(rec.events == [f"trained separately: {group.fallback_reason}"] for rec in recs)
    assert [r.steps for r in results] == [3, 3]


def test_a_group_needs_one_cell_and_distinct_seeds():
    with pytest.raises(ConfigError, match="differ only in their seed"):
        SeedGroupTrainer([digits(0), dataclasses.replace(digits(1), optim=OptimSpec(lr=0.5))])
    with pytest.raises(ConfigError, match="distinct seeds"):
        SeedGroupTrainer([digits(0), digits(0)])
