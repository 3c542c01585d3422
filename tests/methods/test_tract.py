"""TrAct: the first layer's update is the ridge least-squares fit of a gradient step on its
pre-activations (checked against an explicit least-squares solve), fast form = reference form,
strict options, and the direction a real one-step SGD run applies."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, MethodStack, RunContext, build_method, check_methods
from layerlab.methods.tract import tract_direction, tract_direction_fast
from layerlab.models import build_model
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer
from layerlab.train.trainer import DATA_SEED_SALT


def run_context(input_kind="vector"):
    return RunContext(seed=0, steps=10, device=torch.device("cpu"), dtype=torch.float64,
                      loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind=input_kind, n_outputs=3)


def _net(n=7, m=5, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n, m), nn.Tanh(), nn.Linear(m, c)).double()


def _step(net, method, x, y):
    """One forward/backward with ∇_Z kept; then TrAct's transform. Returns (∇_W L, ∇_Z L, G)."""
    z = None

    def keep(module, args, out):
        nonlocal z
        z = out
        out.retain_grad()

    handle = net[0].register_forward_hook(keep)
    F.cross_entropy(net(x), y).backward()
    handle.remove()
    grad_w = net[0].weight.grad.clone()
    bias_grad = net[0].bias.grad.clone()
    method.transform_gradients(net, 0)
    assert torch.equal(net[0].bias.grad, bias_grad)  # the bias trains as usual
    return grad_w, z.grad, net[0].weight.grad.clone()


@pytest.mark.parametrize("b", [32, 4])  # b >= n: the n x n solve; b < n: the batch-space (Woodbury) solve
@pytest.mark.parametrize("lam", [0.1, 2.0])
def test_tract_update_is_the_ridge_least_squares_fit_of_the_activation_proposal(b, lam):
    n, eta = 7, 0.3
    net = _net(n=n)
    method = build_method("tract", lam=lam)
    MethodStack([method]).setup(net, run_context())
    gen = torch.Generator().manual_seed(1)
    x = 3 * torch.rand(b, n, generator=gen, dtype=torch.float64)  # unnormalised, like pixels
    y = torch.randint(0, 3, (b,), generator=gen)
    grad_w, grad_z, g = _step(net, method, x, y)
    # proposal z* = z - eta b ∇_z L; min over ΔW of ||z* - (z + x ΔWᵀ)||² + λ b ||ΔW||², as one
    # stacked least-squares system [x; sqrt(λ b) I] ΔWᵀ = [-eta b ∇_z L; 0], solved by lstsq
    a = torch.cat([x, (lam * b) ** 0.5 * torch.eye(n, dtype=torch.float64)])
    rhs = torch.cat([-eta * b * grad_z, torch.zeros(n, grad_z.shape[1], dtype=torch.float64)])
    delta_w = torch.linalg.lstsq(a, rhs, driver="gelsd").solution.mT
    tract_delta = -eta * g
    assert ((tract_delta - delta_w).norm() / delta_w.norm()).item() <= 1e-8
    # and it is not plain gradient descent (the least-squares fit changes the direction)
    cos = (g * grad_w).sum() / (g.norm() * grad_w.norm())
    assert cos < 0.999


@pytest.mark.parametrize("b,n", [(1, 5), (3, 9), (9, 9), (40, 6)])
def test_tract_fast_form_equals_reference_form(b, n):
    gen = torch.Generator().manual_seed(b * 100 + n)
    x = torch.randn(b, n, generator=gen, dtype=torch.float64)
    gw = torch.randn(4, n, generator=gen, dtype=torch.float64)
    for lam in (1e-2, 0.1, 3.0):
        ref, fast = tract_direction(gw, x, lam), tract_direction_fast(gw, x, lam)
        assert ((fast - ref).norm() / ref.norm()).item() <= 1e-10
        fast32 = tract_direction_fast(gw.float(), x.float(), lam).double()
        assert ((fast32 - ref).norm() / ref.norm()).item() <= 1e-4


def test_tract_large_lambda_is_gradient_descent_scaled_by_one_over_lambda():
    gen = torch.Generator().manual_seed(3)
    x, gw = torch.randn(16, 6, generator=gen, dtype=torch.float64), torch.randn(5, 6, generator=gen, dtype=torch.float64)
    lam = 1e6
    assert ((tract_direction_fast(gw, x, lam) * lam - gw).norm() / gw.norm()).item() < 1e-5
    # and for a small λ, where x xᵀ/b dominates, it is far from it
    assert ((tract_direction_fast(gw, x, 1e-3) * 1e-3 - gw).norm() / gw.norm()).item() > 0.5


def test_tract_options_and_inputs_are_strict():
    assert METHODS.entry("tract").paper.arxiv == "2410.23970"
    for bad in (0, -0.1, float("nan"), True, "0.1"):
        with pytest.raises(ConfigError, match="lam .* must be a finite number > 0"):
            check_methods([("tract", {"lam": bad})])
    with pytest.raises(ConfigError, match="token.*embedding"):
        MethodStack.build([("tract", {})]).setup(_net(), run_context(input_kind="tokens"))
    with pytest.raises(ConfigError, match="no module 'stem'; its Linear layers: 0, 2"):
        MethodStack.build([("tract", {"layer": "stem"})]).setup(_net(), run_context())
    with pytest.raises(ConfigError, match="'1' is a Tanh, not a Linear"):
        MethodStack.build([("tract", {"layer": "1"})]).setup(_net(), run_context())
    with pytest.raises(ConfigError, match="no Linear layer"):
        MethodStack.build([("tract", {})]).setup(nn.Sequential(nn.Tanh()), run_context())


def test_tract_acts_on_the_named_layer_only():
    net = _net()
    method = build_method("tract", layer="2")
    MethodStack([method]).setup(net, run_context())
    x, y = torch.randn(8, 7, dtype=torch.float64), torch.randint(0, 3, (8,))
    F.cross_entropy(net(x), y).backward()
    g0, g2 = net[0].weight.grad.clone(), net[2].weight.grad.clone()
    method.transform_gradients(net, 0)
    assert torch.equal(net[0].weight.grad, g0)
    h = torch.tanh(net[0](x)).detach()
    assert ((net[2].weight.grad - tract_direction(g2, h, 0.1)).norm() / g2.norm()).item() <= 1e-10


def test_tract_in_a_one_step_sgd_run_applies_the_closed_form_to_the_classifier_projection():
    """Through the Trainer: W_1 = W_0 − η ∇_W L (x xᵀ/b + λ I)⁻¹ for ``proj``; every other
    parameter takes the plain SGD step (batch 32 < 64 inputs: the batch-space form)."""
    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(name="sgd", lr=0.5, momentum=0.0, grad_clip=None, schedule="constant"),
                   train=TrainSpec(steps=1, batch_size=32, eval_every=0, log_every=1, dtype="float64"),
                   seed=4, methods=(MethodSpec("tract", {"lam": 0.1}),))
    trainer = Trainer(spec)
    assert trainer.fit().status == "done"
    task = build_task("digits")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task).double()
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = task.train_batch(32, torch.Generator().manual_seed(spec.seed ^ DATA_SEED_SALT))
    x = batch.inputs.double()
    task.loss(model(x), batch).backward()
    for n, p in trainer.model.named_parameters():
        applied = (theta0[n] - p.detach()) / 0.5
        raw = dict(model.named_parameters())[n].grad
        expected = tract_direction(raw, x, 0.1) if n == "proj.weight" else raw
        assert ((applied - expected).norm() / expected.norm()).item() <= 1e-9, n
        if n == "proj.weight":  # the closed form is far from the plain gradient here
            assert (expected - raw).norm() > 0.5 * raw.norm()
