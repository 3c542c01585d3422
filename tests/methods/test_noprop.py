"""NoProp-DT: no gradient crosses a block, the chain's coefficients are the Gaussian posterior's,
and the noprop backbone trains (and resumes exactly) through the one Trainer."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from layerlab.arena.suite import parse_suite
from layerlab.errors import ConfigError, ShapeError
from layerlab.methods import RunContext, build_method
from layerlab.models import NoProp, build_model
from layerlab.models.noprop import cosine_alpha_bar, posterior_coefficients
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.tasks.base import Batch
from layerlab.train import MemoryRecorder, Trainer
from tests.conftest import kill_and_resume


def noprop(T=4, d=8, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return NoProp(ModelSpec(backbone="noprop", d_model=d, n_layers=T), in_features=5, n_classes=3).to(dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def data(n=6):
    return torch.randn(n, 5, dtype=torch.float64, generator=gen(1)), torch.tensor([0, 1, 2, 0, 1, 2])[:n]


def test_no_gradient_crosses_a_block():
    model = noprop()
    x, y = data()
    parts = model.losses(x, y, gen())
    params = dict(model.named_parameters())
    for t in range(model.T):
        grads = torch.autograd.grad(parts.blocks[t], list(params.values()), retain_graph=True, allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            mine = name.startswith(f"blocks.{t}.")
            if mine:
                assert g is not None and g.abs().sum() > 0, name
            else:
                assert g is None or torch.count_nonzero(g) == 0, f"block {t}'s loss reaches {name}"
    grads = torch.autograd.grad(parts.cross_entropy, list(params.values()), allow_unused=True)
    for (name, _), g in zip(params.items(), grads):
        assert (g is not None and g.abs().sum() > 0) if name.startswith("classifier.") else \
            (g is None or torch.count_nonzero(g) == 0), name


def test_one_backward_of_the_method_loss_gives_each_block_its_own_local_gradient():
    model = noprop()
    method = build_method("noprop", eta=0.3)
    run = RunContext(seed=0, steps=1, device=torch.device("cpu"), dtype=torch.float64,
                     loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind="vector", n_outputs=3)
    method.attach(run, 0)
    method.setup(model, run)
    x, y = data()
    state = method.generator.get_state()
    method.transform_loss(torch.tensor(0.0), None, Batch(x, y), 0).backward()
    total = {n: p.grad.clone() for n, p in model.named_parameters()}
    parts = model.losses(x, y, torch.Generator().set_state(state))  # the same noise
    for t, block in enumerate(model.blocks):
        local = torch.autograd.grad(0.5 * 0.3 * parts.weights[t] * parts.blocks[t], list(block.parameters()),
                                    retain_graph=True)
        for (name, _), g in zip(block.named_parameters(), local):
            torch.testing.assert_close(total[f"blocks.{t}.{name}"], g, rtol=1e-12, atol=1e-14)


def test_schedule_and_posterior_coefficients_are_the_gaussian_conditionals():
    T = 10
    ab = cosine_alpha_bar(T)
    assert ab[0] == 0 and torch.all(ab[1:] > ab[:-1]) and ab[-1] < 1
    a, b, c = posterior_coefficients(ab)
    for t in range(1, T + 1):
        # joint of (z_{t-1}, z_t) given u under q: z_{t-1} = sqrt(alpha_{t-1}) z_t + noise, z_t ~ q(z_t|y)
        alpha_prev = ab[t - 1] / ab[t]
        var_t, var_prev = 1 - ab[t], alpha_prev * (1 - ab[t]) + (1 - alpha_prev)
        cov = alpha_prev.sqrt() * var_t
        gain = cov / var_prev  # E[z_t | z_{t-1}] = sqrt(ab_t) u + gain (z_{t-1} - sqrt(ab_{t-1}) u)
        torch.testing.assert_close(b[t - 1], gain, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(a[t - 1], ab[t].sqrt() - gain * ab[t - 1].sqrt(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(c[t - 1], var_t - cov ** 2 / var_prev, rtol=1e-12, atol=1e-15)


def test_with_perfect_blocks_the_chain_ends_in_q_of_z_T():
    """If every block returned u_y exactly, z_t would follow q(z_t | y) at every t: the recursion's
    coefficients are the posterior's. Checked by Monte Carlo at t = T (n = 40,000, 5 sigma)."""
    model = noprop(T=5)
    u = model.embedding[1].double()

    class Oracle(torch.nn.Module):
        def forward(self, z, x, embedding):
            return u.expand_as(z)

    model.blocks = torch.nn.ModuleList(Oracle() for _ in range(model.T))
    model.classifier = torch.nn.Identity()
    z_T = model(torch.zeros(40_000, 5, dtype=torch.float64), gen(3))
    mean, var = model.alpha_bar[-1].double().sqrt() * u, 1 - model.alpha_bar[-1].double()
    n = z_T.shape[0]
    assert torch.all((z_T.mean(0) - mean).abs() < 5 * (var / n).sqrt())
    assert torch.all((z_T.var(0) - var).abs() < 5 * var * (2 / n) ** 0.5)


def test_inference_is_deterministic_and_leaves_the_global_rng_alone():
    model = noprop().eval()
    x, _ = data()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    out = model(x)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(model(x), out) and out.shape == (6, 3)
    assert not torch.equal(model(x, gen(5)), out)
    with pytest.raises(ShapeError, match=r"\(B, F\) with F = in_features = 5"):
        model(torch.zeros(2, 4, dtype=torch.float64))


def test_strict_options_and_the_backbone_it_needs():
    with pytest.raises(ConfigError, match="eta .* must be a finite number > 0"):
        build_method("noprop", eta=0)
    m = build_method("noprop")
    run = RunContext(seed=0, steps=1, device=torch.device("cpu"), dtype=torch.float32, loss=None,
                     input_kind="vector", n_outputs=10)
    m.attach(run, 0)
    classifier = build_model(ModelSpec(backbone="classifier", d_model=8, n_layers=1), build_task("digits"))
    with pytest.raises(ConfigError, match="Use backbone = 'noprop'"):
        m.setup(classifier, run)
    with pytest.raises(ConfigError, match="n_classes >= 2"):
        NoProp(ModelSpec(backbone="noprop"), in_features=3, n_classes=1)
    assert ModelSpec(backbone="noprop", n_layers=10).label() == "noprop[T=10]"
    with pytest.raises(ConfigError, match="backbone 'noprop' does not use 'channel'"):
        parse_suite({"tasks": [{"name": "digits"}], "models": [{"backbone": "noprop", "channel": "mlp"}]})


# ---- through the one Trainer ---------------------------------------------------------------------
def spec(**train) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="noprop", d_model=16, n_layers=3),
                   optim=OptimSpec(lr=1e-2, warmup_steps=5, grad_clip=0.0),
                   train=TrainSpec(**{"steps": 60, "batch_size": 32, "eval_every": 20, "log_every": 1, **train}),
                   methods=(MethodSpec("noprop"),), seed=2)


def losses(rec):
    return [v for _, v in rec.series("train", "loss")]


def test_noprop_learns_digits_and_resumes_after_a_kill_identically(tmp_path):
    ref = MemoryRecorder()
    result = Trainer(spec(), recorder=ref).fit()
    assert result.results["test"]["accuracy"] > 0.25  # chance 0.1; 60 steps only (0.34 when written)
    rec, _ = kill_and_resume(spec(), tmp_path / "run.pt", kill_at=47)
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))
