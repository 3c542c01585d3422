"""DANN: the gradient reversal layer, the λ schedule, the domain loss and a run on domain_shift."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, MethodStack, RunContext, build_method, check_methods
from layerlab.methods.dann import adaptation_factor, reverse_gradient
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import domain_shift
from layerlab.tasks.base import Batch
from layerlab.train import Trainer
from layerlab.train.recorder import MemoryRecorder
from tests.conftest import kill_and_resume


def run_context(steps=100, input_kind="vector"):
    return RunContext(seed=0, steps=steps, device=torch.device("cpu"), dtype=torch.float64,
                      loss=lambda out, b: F.cross_entropy(out[b.mask], b.targets[b.mask]), input_kind=input_kind,
                      n_outputs=3)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def attached(steps=100, **options):
    torch.manual_seed(0)
    model = Net().double()
    stack = MethodStack.build([("dann", options)])
    stack.setup(model, run_context(steps))
    return model, stack, stack.methods[0]


def test_registered_with_its_paper():
    entry = METHODS.entry("dann")
    assert entry.paper.arxiv == "1505.07818" and "1505.07818" in entry.cls.__doc__


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0, 2.5])
def test_reversal_is_identity_forward_and_minus_lambda_times_the_gradient_backward(lam):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(6, 4, dtype=torch.float64, generator=g)
    y = reverse_gradient(x, lam)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.equal(grad, -lam * upstream)  # exactly, not approximately
    # inside a network: the gradient below the layer is -λ times the gradient without it
    w = torch.randn(4, 2, dtype=torch.float64, generator=g)
    (plain,) = torch.autograd.grad(torch.sin(x @ w).sum(), x)
    (rev,) = torch.autograd.grad(torch.sin(reverse_gradient(x, lam) @ w).sum(), x)
    assert torch.equal(rev, -lam * plain)


def test_lambda_schedule_is_the_papers():
    for p in (0.0, 0.05, 0.1, 0.3, 0.5, 1.0):
        assert adaptation_factor(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1, rel=1e-15, abs=0)
    assert adaptation_factor(0.0) == 0.0
    assert adaptation_factor(1.0) == pytest.approx(0.9999092, abs=1e-7)
    values = [adaptation_factor(p / 20) for p in range(21)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert adaptation_factor(0.1, gamma=5.0) == pytest.approx(2 / (1 + math.exp(-0.5)) - 1)
    _, _, m = attached(steps=200)
    assert m.lam(0) == 0.0 and m.lam(50) == adaptation_factor(0.25) and m.lam(200) == adaptation_factor(1.0)


def test_domain_loss_and_its_gradients_are_the_papers_saddle_point():
    """Loss adds 1/n Σ_src L_d + 1/n' Σ_tgt L_d; θ_d descends it, θ_f ascends it times λ; θ_y sees only L_y."""
    model, stack, m = attached(steps=100)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 5, dtype=torch.float64, generator=g)
    mask = torch.tensor([True, True, True, False, False, False, False])  # n = 3 source, n' = 4 target
    targets = torch.tensor([0, 2, 1, -100, -100, -100, -100])
    batch = Batch(x, targets, mask)
    step = 30
    lam = adaptation_factor(0.3)
    out = model(x)
    task_loss = F.cross_entropy(out[mask], targets[mask])
    loss = stack.transform_loss(task_loss, out, batch, step)
    # explicit forward: features, domain logits, per-domain means
    feats = torch.tanh(model.body(x))
    logits = model.dann_domain_classifier(feats).squeeze(-1)
    d = (~mask).double()
    ld = (F.binary_cross_entropy_with_logits(logits[mask], d[mask])
          + F.binary_cross_entropy_with_logits(logits[~mask], d[~mask]))
    assert loss.item() == pytest.approx((task_loss + ld).item(), rel=1e-12)
    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), retain_graph=True)))
    ly_grads = dict(zip(params, torch.autograd.grad(task_loss, list(params.values()), allow_unused=True,
                                                   retain_graph=True)))
    ld_grads = dict(zip(params, torch.autograd.grad(ld, list(params.values()), allow_unused=True)))
    for name in params:
        if name.startswith("dann_domain_classifier"):
            expected = ld_grads[name]  # the domain classifier minimises L_d
        elif name.startswith("head"):
            expected = ly_grads[name]  # the label predictor never sees L_d
        else:
            expected = ly_grads[name] - lam * ld_grads[name]  # the features: L_y − λ L_d
        if expected is None:  # a parameter a loss does not reach: its gradient is zero
            expected = torch.zeros_like(grads[name])
        torch.testing.assert_close(grads[name], expected, rtol=1e-12, atol=1e-14)


def test_strict_options_and_inputs():
    with pytest.raises(ConfigError, match="gamma must be a finite number > 0"):
        check_methods([("dann", {"gamma": 0})])
    with pytest.raises(ConfigError, match="hidden must be an integer >= 0"):
        check_methods([("dann", {"hidden": -1})])
    with pytest.raises(ConfigError, match="features='fc9' must name a Linear submodule.*'body', 'head'"):
        MethodStack.build([("dann", {"features": "fc9"})]).setup(Net().double(), run_context())
    with pytest.raises(ConfigError, match="'tokens' inputs"):
        MethodStack.build([("dann", {})]).setup(Net().double(), run_context(input_kind="tokens"))
    model, stack, _ = attached()
    x = torch.randn(4, 5, dtype=torch.float64)
    out = model(x)
    with pytest.raises(ConfigError, match="use a domain-shift task"):
        stack.transform_loss(out.sum(), out, Batch(x, torch.zeros(4, dtype=torch.long)), 0)
    assert build_method("dann", hidden=0).hidden == 0


def dann_spec(steps=40, methods=(MethodSpec("dann", {"hidden": 16}),)):
    return RunSpec(task=TaskSpec("domain_shift", {"rotation": 20.0, "shift": 0}),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=2),
                   train=TrainSpec(steps=steps, batch_size=16, eval_every=10, log_every=1), seed=2, methods=methods)


def losses(rec):
    return [v for _, v in rec.series("train", "loss")]


def test_target_labels_never_reach_training(monkeypatch):
    """Corrupting every target-domain training label leaves the run bit-identical."""
    ref_rec = MemoryRecorder()
    ref = Trainer(dann_spec(), recorder=ref_rec)
    ref.fit()
    task = ref.task
    x, y = domain_shift._digits()
    bad = y.clone()
    tgt = task.role_indices("target")
    bad[tgt] = (bad[tgt] + 1 + torch.randint(0, 9, (len(tgt),), generator=torch.Generator().manual_seed(0))) % 10
    assert (bad[tgt] != y[tgt]).all()
    monkeypatch.setattr(domain_shift, "_digits", lambda: (x, bad))
    rec = MemoryRecorder()
    other = Trainer(dann_spec(), recorder=rec)
    other.fit()
    assert losses(rec) == losses(ref_rec)
    for (n, a), (_, b) in zip(ref.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), n


def test_dann_run_changes_training_and_resumes_after_a_kill(tmp_path):
    plain = MemoryRecorder()
    Trainer(dann_spec(methods=()), recorder=plain).fit()
    ref = MemoryRecorder()
    Trainer(dann_spec(), recorder=ref).fit()
    assert losses(ref) != losses(plain)  # the domain loss is added and trained

    rec, _ = kill_and_resume(dann_spec(), tmp_path / "run.pt", kill_at=27)
    assert losses(rec) == losses(ref)
