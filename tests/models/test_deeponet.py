"""The operator backbone (DeepONet, arXiv:1910.03193): with hand-set weights a DeepONet is exactly
the trapezoidal antiderivative; the FNN baseline reads [u, y]; strict options; the Trainer runs it."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models import accepts, build_model
from layerlab.models.deeponet import DeepONet, OperatorFNN
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.tasks.antiderivative import cumulative_trapezoid

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def trapezoid_deeponet(m: int) -> DeepONet:
    """A DeepONet (ReLU, one hidden layer of 2m, p = m) set by hand to G(u)(y) = Σ_i u_i w_i(y),
    w_i the trapezoidal weight of sensor i in ∫₀^y: branch = identity (relu(u) - relu(-u)), trunk
    r_j(y) = relu((y - x_j)/h), clamp_j = r_j - r_{j+1}, w_i = h/2 (clamp_{i-1} + clamp_i)."""
    h = 1.0 / (m - 1)
    x = torch.linspace(0, 1, m, dtype=F64)
    net = DeepONet(m, x[:, None], width=2 * m, depth=1, p=m).double()
    eye = torch.eye(m, dtype=F64)
    C = eye - torch.diag(torch.ones(m - 1, dtype=F64), 1)  # clamp = C r
    A = eye + torch.diag(torch.ones(m - 1, dtype=F64), -1)  # w = h/2 A clamp
    with torch.no_grad():
        b1, b2 = net.branch[0], net.branch[2]
        b1.weight.copy_(torch.cat([eye, -eye])), b1.bias.zero_()
        b2.weight.copy_(torch.cat([eye, -eye], 1)), b2.bias.zero_()
        t1, t2 = net.trunk[0], net.trunk[2]
        t1.weight.zero_(), t1.bias.zero_()
        t1.weight[:m, 0] = 1.0 / h
        t1.bias[:m] = -x / h
        t2.weight.zero_(), t2.bias.zero_()
        t2.weight[:, :m] = (h / 2) * A @ C
        net.b0.zero_()
    return net


def test_hand_set_deeponet_is_the_trapezoidal_antiderivative() -> None:
    task = build_task("antiderivative", m=21, n_train=4, n_eval=64)
    net = trapezoid_deeponet(21)
    batch = task.eval_set("test")
    out = net(batch.inputs)
    expected = cumulative_trapezoid(batch.inputs, 1.0 / 20)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert torch.equal(task.oracle(batch), expected)
    # and the trapezoidal rule is within its error bound h^2/12 * max|u''| of the exact target
    coeffs = task.functions(8, torch.Generator().manual_seed(3))
    u = task.u(coeffs, task.sensors)
    w, omega, phi = coeffs
    fine = torch.linspace(0, 1, 2001, dtype=F64)
    u2 = -(2.0 / task.features) ** 0.5 * torch.einsum("nr,nrk->nk", w * omega ** 2,
                                                       torch.cos(omega[..., None] * fine + phi[..., None]))
    bound = (1.0 / 20) ** 2 / 12 * u2.abs().amax(1, keepdim=True)  # |error at x_k| <= x_k h^2/12 max|u''|
    err = (net(u) - task.antiderivative(coeffs, task.sensors)).abs()
    assert (err <= bound * task.sensors + 1e-12).all()
    assert err.max() > 1e-6  # a real discretisation error, not an identity


def test_deeponet_is_the_sum_of_branch_times_trunk() -> None:
    torch.manual_seed(0)
    y = torch.rand(7, 2, dtype=F64)
    net = DeepONet(5, y, width=6, depth=2, p=4, activation="tanh").double()
    with torch.no_grad():
        net.b0.fill_(0.3)
    u = torch.randn(3, 5, dtype=F64)
    b, t = net.branch(u), net.trunk(y)
    expected = torch.stack([torch.stack([(b[i] * t[j]).sum() + 0.3 for j in range(7)]) for i in range(3)])
    torch.testing.assert_close(net(u), expected, rtol=0, atol=1e-13)
    assert isinstance(net.trunk[-1], torch.nn.Tanh) and isinstance(net.branch[-1], torch.nn.Linear)


def test_fnn_baseline_reads_u_and_y_together() -> None:
    torch.manual_seed(0)
    y = torch.linspace(0, 1, 4, dtype=F64)[:, None]
    net = OperatorFNN(3, y, width=5, depth=2).double()
    u = torch.randn(2, 3, dtype=F64)
    out = net(u)
    for i in range(2):
        for j in range(4):
            torch.testing.assert_close(out[i, j], net.net(torch.cat([u[i], y[j]]))[0], rtol=0, atol=1e-14)


def test_options_and_shapes_are_strict() -> None:
    task = build_task("antiderivative", m=8, n_train=4, n_eval=4)
    with pytest.raises(ConfigError, match="Valid: deeponet, fnn"):
        ModelSpec(backbone="operator", mixer="fno")
    with pytest.raises(ConfigError, match="unknown mixer_options"):
        build_model(ModelSpec(backbone="operator", mixer="deeponet", mixer_options={"q": 3}), task)
    with pytest.raises(ConfigError, match="no basis size p"):
        build_model(ModelSpec(backbone="operator", mixer="fnn", mixer_options={"p": 3}), task)
    with pytest.raises(ConfigError, match="operator activation"):
        build_model(ModelSpec(backbone="operator", mixer="fnn", mixer_options={"activation": "swish"}), task)
    with pytest.raises(ConfigError, match="needs a function task"):
        build_model(ModelSpec(backbone="operator", mixer="deeponet"), build_task("digits"))
    assert accepts("operator", "function") and not accepts("classifier", "function")
    model = build_model(ModelSpec(backbone="operator", mixer="deeponet", d_model=8), task)
    with pytest.raises(ShapeError, match="m = sensors = 8"):
        model(torch.randn(2, 9))
    with pytest.raises(ShapeError, match="8 outputs per function"):
        task.loss(torch.zeros(2, 7), task.train_batch(2, torch.Generator()))
    assert ModelSpec(backbone="operator", mixer="deeponet").width_multiple == 1


@pytest.mark.parametrize("mixer", ["deeponet", "fnn"])
def test_trains_through_the_one_trainer(mixer: str) -> None:
    from layerlab.train.trainer import Trainer

    run = RunSpec(task=TaskSpec("antiderivative", {"m": 16, "n_train": 64, "n_eval": 32}),
                  model=ModelSpec(backbone="operator", mixer=mixer, d_model=16, n_layers=2),
                  optim=OptimSpec(lr=3e-3), train=TrainSpec(steps=60, batch_size=16, eval_every=0, log_every=10))
    result = Trainer(run).fit()
    assert result.status == "done"
    assert result.results["test"]["rel_l2"] < 1.0  # better than predicting zero after 60 steps
