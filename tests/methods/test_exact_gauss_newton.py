"""Exact Gauss-Newton: the batch-space step equals the explicit p × p Gauss-Newton step (float64,
1e-8, with J, r, Q built independently by torch.autograd.functional), for the squared error and
for the cross-entropy (softmax GGN); strict options; the step a real one-step SGD run applies."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

from layerlab.errors import ConfigError
from layerlab.methods import METHODS, MethodStack, RunContext, build_method, check_methods
from layerlab.methods.exact_gauss_newton import gauss_newton_step, gauss_newton_step_fast
from layerlab.models import build_model
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.tasks.base import Batch
from layerlab.train import Trainer
from layerlab.train.trainer import DATA_SEED_SALT


def mse(out, batch):
    return 0.5 * (out - batch.targets).square().sum(-1).mean()


def ce(out, batch):
    return F.cross_entropy(out, batch.targets)


def run_context(loss, input_kind="vector"):
    return RunContext(seed=0, steps=10, device=torch.device("cpu"), dtype=torch.float64, loss=loss,
                      input_kind=input_kind, n_outputs=3)


def _net(n=4, h=6, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n, h), nn.Tanh(), nn.Linear(h, c)).double()


def explicit_step(net, x, y, lam, kind):
    """(JᵀQJ + bλI)⁻¹Jᵀr by hand: J from autograd.functional.jacobian over a flat parameter vector;
    r = f − y, Q = I (squared error) or r = p − onehot, Q = blockdiag(diag p − p pᵀ) (cross-entropy)."""
    shapes = [p.shape for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def f(flat):
        ps, i = [], 0
        for s in shapes:
            k = s.numel()
            ps.append(flat[i:i + k].view(s))
            i += k
        h = torch.tanh(x @ ps[0].T + ps[1])
        return (h @ ps[2].T + ps[3]).reshape(-1)

    jac = jacobian(f, theta)  # (bc, p)
    out = f(theta).view(len(x), -1)
    b, c = out.shape
    if kind == "mse":
        r, q = (out - y).reshape(-1), torch.eye(b * c, dtype=torch.float64)
    else:
        pr = out.softmax(-1)
        r = (pr - F.one_hot(y, c).double()).reshape(-1)
        q = torch.block_diag(*[torch.diag(p) - torch.outer(p, p) for p in pr])
    p = theta.numel()
    return -torch.linalg.solve(jac.T @ q @ jac + b * lam * torch.eye(p, dtype=torch.float64), jac.T @ r)


@pytest.mark.parametrize("kind", ["mse", "ce"])
@pytest.mark.parametrize("b", [1, 5])
@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_egn_step_equals_the_explicit_p_by_p_gauss_newton_step(kind, b, lam):
    net = _net()
    gen = torch.Generator().manual_seed(b)
    x = torch.randn(b, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(b, 3, generator=gen, dtype=torch.float64) if kind == "mse" else torch.randint(0, 3, (b,), generator=gen)
    loss = mse if kind == "mse" else ce
    method = build_method("exact_gauss_newton", lam=lam)
    MethodStack([method]).setup(net, run_context(loss))
    batch = Batch(x, y)
    loss(net(x), batch).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    method.transform_loss(torch.tensor(0.0), None, batch, 0)
    method.transform_gradients(net, 0)
    applied = -torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    expected = explicit_step(net, x, y, lam, kind)
    assert ((applied - expected).norm() / expected.norm()).item() <= 1e-8
    # a descent direction, gᵀd < 0 (the GGN is positive semi-definite), and (b > 1) not the gradient's
    assert torch.dot(expected, grad) < 0
    if b > 1:
        assert torch.dot(expected, grad) ** 2 < 0.99 * (expected.norm() * grad.norm()) ** 2


def test_egn_fast_form_equals_reference_form_and_the_gradient_identity():
    gen = torch.Generator().manual_seed(0)
    for m, p in [(1, 7), (6, 20), (12, 9)]:  # bc < p, bc > p
        jac = torch.randn(m, p, generator=gen, dtype=torch.float64)
        r = torch.randn(m, generator=gen, dtype=torch.float64)
        a = torch.randn(m, m, generator=gen, dtype=torch.float64)
        q = a @ a.T / m
        for lam in (1e-4, 1.0):
            ref, fast = gauss_newton_step(jac, r, q, lam, 3), gauss_newton_step_fast(jac, r, q, lam, 3)
            assert ((fast - ref).norm() / ref.norm()).item() <= 1e-10
            fast32 = gauss_newton_step_fast(jac.float(), r.float(), q.float(), lam, 3).double()
            assert ((fast32 - ref).norm() / ref.norm()).item() <= 1e-4
    # large λ: d → −Jᵀr/(bλ) = −g/λ, gradient descent with step 1/λ
    jac, r = torch.randn(5, 8, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    d = gauss_newton_step_fast(jac, r, torch.eye(5, dtype=torch.float64), 1e7, 5)
    assert ((d * 5e7 + jac.T @ r).norm() / (jac.T @ r).norm()).item() < 1e-5


def test_egn_solves_a_linear_least_squares_problem_in_one_step():
    """For a linear model and the squared error, GN is Newton: with λ → 0 and a full-rank batch
    one step of lr 1 reaches the least-squares solution (the training loss's minimum)."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    method = build_method("exact_gauss_newton", lam=1e-10)
    MethodStack([method]).setup(net, run_context(mse))
    batch = Batch(x, y)
    mse(net(x), batch).backward()
    method.transform_loss(torch.tensor(0.0), None, batch, 0)
    method.transform_gradients(net, 0)
    with torch.no_grad():
        for p in net.parameters():
            p -= p.grad
    xa = torch.cat([x, torch.ones(10, 1, dtype=torch.float64)], 1)
    best = torch.linalg.lstsq(xa, y).solution  # (4, 2)
    assert torch.allclose(torch.cat([net.weight.T, net.bias[None]]), best, atol=1e-7)


def test_egn_options_and_settings_are_strict():
    assert METHODS.entry("exact_gauss_newton").paper.arxiv == "2405.14402"
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ConfigError, match="lam .* must be a finite number > 0"):
            check_methods([("exact_gauss_newton", {"lam": bad})])
    with pytest.raises(ConfigError, match="max_outputs must be an integer >= 1"):
        check_methods([("exact_gauss_newton", {"max_outputs": 0})])
    with pytest.raises(ConfigError, match="needs a vector task"):
        MethodStack.build([("exact_gauss_newton", {})]).setup(_net(), run_context(mse, input_kind="tokens"))
    stack = MethodStack.build([("exact_gauss_newton", {})])
    net = _net()
    with pytest.raises(ConfigError, match="optimizer is AdamW. Set optim.name = 'sgd'"):
        stack.make_optimizer(net, lambda: torch.optim.AdamW(net.parameters()))
    method = build_method("exact_gauss_newton", max_outputs=8)
    MethodStack([method]).setup(net, run_context(mse))
    batch = Batch(torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64))
    method.transform_loss(torch.tensor(0.0), None, batch, 0)
    with pytest.raises(ConfigError, match="9 outputs \\(batch 3 x 3\\), more than max_outputs = 8"):
        method.transform_gradients(net, 0)


def test_egn_in_a_one_step_sgd_run_takes_the_gauss_newton_step():
    """Through the Trainer on digits (cross-entropy, softmax GGN), classifier backbone, float64:
    θ_1 = θ_0 + α d with d from the reference p × p form on the same batch."""
    lam, lr = 0.1, 0.5
    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", d_model=8, n_layers=1),
                   optim=OptimSpec(name="sgd", lr=lr, momentum=0.0, grad_clip=1.0, schedule="constant"),
                   train=TrainSpec(steps=1, batch_size=6, eval_every=0, log_every=1, dtype="float64"),
                   seed=2, methods=(MethodSpec("exact_gauss_newton", {"lam": lam}),))
    trainer = Trainer(spec)
    assert trainer.fit().status == "done"
    task = build_task("digits")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task).double()
    names = [n for n, _ in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    theta1 = torch.cat([dict(trainer.model.named_parameters())[n].detach().reshape(-1) for n in names])
    batch = task.train_batch(6, torch.Generator().manual_seed(spec.seed ^ DATA_SEED_SALT))
    x = batch.inputs.double()
    params = {n: p.detach() for n, p in model.named_parameters()}
    shapes = {n: p.shape for n, p in params.items()}

    def f(flat):
        ps, i = {}, 0
        for n in names:
            k = shapes[n].numel()
            ps[n] = flat[i:i + k].view(shapes[n])
            i += k
        return torch.func.functional_call(model, ps, (x,)).reshape(-1)

    jac = jacobian(f, theta0)
    out = f(theta0).view(6, 10)
    pr = out.softmax(-1)
    r = (pr - F.one_hot(batch.targets, 10).double()).reshape(-1)
    q = torch.block_diag(*[torch.diag(p) - torch.outer(p, p) for p in pr])
    d = gauss_newton_step(jac, r, q, lam, 6)
    step = theta1 - theta0
    assert ((step - lr * d).norm() / (lr * d).norm()).item() <= 1e-8
