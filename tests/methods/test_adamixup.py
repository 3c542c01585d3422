"""AdaMixUp: the learned mixing policy, the objective L_D + L_D' + L_intr, training of π and φ, exact resume."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, MethodStack, build_method, check_methods
from layerlab.methods.adamixup import AdaMixUp
from layerlab.methods.base import RunContext, method_seed
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks.base import Batch
from layerlab.train import MemoryRecorder, Trainer
from tests.conftest import kill_and_resume


def run_context(input_kind="vector", seed=0):
    return RunContext(seed=seed, steps=100, device=torch.device("cpu"), dtype=torch.float64,
                      loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind=input_kind, n_outputs=4)


def attached(seed=0, **options) -> AdaMixUp:
    m = build_method("adamixup", **options)
    m.attach(run_context(seed=seed), 0)
    m.setup(nn.Linear(2, 2), run_context(seed=seed))
    return m


def data(n=12, f=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, f, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g))


def test_registered_with_its_paper_and_strict_options():
    entry = METHODS.entry("adamixup")
    assert entry.paper.arxiv == "1809.02499" and "1809.02499" in entry.cls.__doc__
    assert "Out-Of-Manifold Regularization" in " ".join(entry.cls.__doc__.split())
    for bad, match in (({"hidden": 0}, "hidden must be an integer >= 1"), ({"lr": 0.0}, "lr must be a finite number > 0"),
                       ({"lr": float("nan")}, "lr"), ({"hidden": 2.0}, "hidden")):
        with pytest.raises(ConfigError, match=match):
            check_methods([("adamixup", bad)])
    with pytest.raises(ConfigError, match="adamixup mixes feature vectors.*'tokens'"):
        MethodStack.build([("adamixup", {})]).setup(nn.Linear(2, 2), run_context(input_kind="tokens"))


def test_mixing_ratio_is_drawn_in_the_policy_region_and_mixes_the_pair():
    m = attached(hidden=16)
    b = data()
    out = m.transform_batch(b, 0)
    # replay the method's generator: the nets' initial weights (π: 16x10, 3x16 drawn then zeroed;
    # φ: 16x5, 1x16), then the partner order and ε
    replay = torch.Generator().manual_seed(method_seed(0, 0, "adamixup"))
    for shape in ((16, 10), (3, 16), (16, 5), (1, 16)):
        torch.rand(*shape, generator=replay, dtype=torch.float64)
    perm = torch.randperm(12, generator=replay)
    eps = torch.rand(12, generator=replay, dtype=torch.float64)
    assert torch.equal(m.perm, perm)
    assert (m.lam - (1 / 3 + eps / 3)).abs().max().item() <= 1e-15  # initial region (1/3, 1/3 + 1/3)
    n, x = len(b), b.inputs
    assert out.inputs.shape == (2 * n, 5) and torch.equal(out.inputs[:n], x)
    assert torch.equal(out.targets, torch.cat([b.targets, b.targets])) and out.mask is None
    region = torch.softmax(m.policy(torch.cat([x, x[m.perm]], 1)), -1)
    alpha, delta = region[:, 0], region[:, 1]
    lam = m.lam
    assert torch.all(lam >= alpha - 1e-15) and torch.all(lam <= alpha + delta + 1e-15)
    expected = lam[:, None] * x + (1 - lam[:, None]) * x[m.perm]
    assert (out.inputs[n:] - expected).abs().max().item() <= 1e-15
    # at init the policy's last layer is zero: region (1/3, 1/3), λ ∈ [1/3, 2/3], not constant
    assert torch.allclose(alpha, torch.full_like(alpha, 1 / 3)) and torch.allclose(delta, torch.full_like(delta, 1 / 3))
    assert lam.std() > 0.01 and sorted(m.perm.tolist()) == list(range(n))
    # the draws came from the method's generator, not the global RNG
    other = attached(hidden=16)
    state = torch.get_rng_state()
    other.transform_batch(b, 0)
    assert torch.equal(torch.get_rng_state(), state)


def test_loss_is_clean_plus_mixed_soft_target_plus_intrusion():
    m = attached(hidden=8)
    b = data(n=10)
    torch.manual_seed(0)
    model = nn.Linear(5, 4).double()
    tb = m.transform_batch(b, 0)
    outputs = model(tb.inputs)
    got = m.transform_loss(torch.tensor(0.0), outputs, tb, 0)
    n, y, lam = 10, b.targets, m.lam
    soft = lam[:, None] * F.one_hot(y, 4) + (1 - lam[:, None]) * F.one_hot(y[m.perm], 4)
    mixed_ce = -(soft * torch.log_softmax(outputs[n:], -1)).sum(-1).mean()
    clean_ce = F.cross_entropy(outputs[:n], y)
    phi_real = torch.sigmoid(m.discriminator(b.inputs).squeeze(-1))
    phi_mixed = torch.sigmoid(m.discriminator(tb.inputs[n:]).squeeze(-1))
    intr = -torch.log(phi_real).mean() - torch.log(1 - phi_mixed).mean()
    assert got.item() == pytest.approx((clean_ce + mixed_ce + intr).item(), rel=1e-12)


def test_policy_and_discriminator_are_trained_by_the_methods_optimizer():
    m = attached(hidden=8, lr=1e-2)
    b = data(n=16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    nets, before = None, None
    for step in range(2):
        tb = m.transform_batch(b, step)
        loss = m.transform_loss(torch.tensor(0.0), model(tb.inputs), tb, step)
        loss.backward()
        if step == 0:
            nets = [*m.policy.parameters(), *m.discriminator.parameters()]
            before = [p.detach().clone() for p in nets]
            # the policy's gradient arrives through λ (from the classifier's and the intrusion loss);
            # its first layer gets none while its zero-initialised last layer is still zero
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*m.policy[2].parameters(), *m.discriminator.parameters()])
        else:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets)
        m.after_step(model, step)
        assert all(p.grad is None for p in nets)
    assert all(not torch.equal(a, p) for a, p in zip(before, nets))
    assert {id(p) for p in nets}.isdisjoint({id(p) for p in model.parameters()})


def test_state_round_trip_restores_nets_optimizer_and_stream():
    a = attached(hidden=8)
    b = data()
    model = nn.Linear(5, 4).double()
    for step in range(3):
        tb = a.transform_batch(b, step)
        a.transform_loss(torch.tensor(0.0), model(tb.inputs), tb, step).backward()
        a.after_step(model, step)
    c = attached(seed=7, hidden=8)
    c.load_state_dict(a.state_dict())
    for p, q in zip([*a.policy.parameters(), *a.discriminator.parameters()],
                    [*c.policy.parameters(), *c.discriminator.parameters()]):
        assert torch.equal(p, q)
    ta, tc = a.transform_batch(b, 3), c.transform_batch(b, 3)
    assert torch.equal(ta.inputs, tc.inputs)
    assert a.optimizer.state_dict()["state"][0]["step"] == c.optimizer.state_dict()["state"][0]["step"] == 3


def digits_spec(methods):
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=32, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=5),
                   train=TrainSpec(steps=60, batch_size=32, eval_every=20, log_every=1), seed=3, methods=methods)


def losses(rec):
    return [v for _, v in rec.series("train", "loss")]


def test_resume_after_a_kill_gives_an_identical_loss_curve(tmp_path):
    spec = digits_spec((MethodSpec("adamixup", {"hidden": 16}),))
    ref = MemoryRecorder()
    result = Trainer(spec, recorder=ref).fit()
    assert result.status == "done" and result.results["test"]["accuracy"] > 0.5
    rec, saved = kill_and_resume(spec, tmp_path / "run.pt", kill_at=47)
    assert saved["step"] == 40 and "policy" in saved["methods"][0] and "discriminator" in saved["methods"][0]
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))
