import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models import build_model
from layerlab.spec import ModelSpec
from layerlab.tasks import build_task


def test_training_inputs_are_exactly_white_and_targets_follow_the_teacher():
    task = build_task("linear_teacher", in_features=6, out_features=5, singular_values=[3, 1.5, 0.2], n_train=40)
    b = task.train_batch(0, torch.Generator())
    x, y = b.inputs, b.targets
    assert torch.allclose(x.T @ x / 40, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y, x @ task.A.T, atol=1e-12)
    assert torch.allclose(torch.linalg.svdvals(task.A)[:3], torch.tensor([3, 1.5, 0.2], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(task.U.T @ task.U, torch.eye(3, dtype=torch.float64), atol=1e-12)
    # Σ31 = (1/P) Σ y xᵀ equals the teacher exactly: what the deep linear theory assumes
    assert torch.allclose(y.T @ x / 40, task.A, atol=1e-12)


def test_loss_convention_makes_gradient_descent_a_closed_form():
    # W <- W - η (W - A) on whitened data, so W_t = A + (1 - η)^t (W_0 - A) exactly
    task = build_task("linear_teacher", in_features=4, out_features=3, singular_values=[2, 1], n_train=16)
    b = task.train_batch(0, torch.Generator())
    W0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = W0.clone().requires_grad_()
    eta = 0.1
    for _ in range(25):
        loss = task.loss(b.inputs @ W.T, b)
        (g,) = torch.autograd.grad(loss, W)
        W = (W - eta * g).detach().requires_grad_()
    assert torch.allclose(W, task.A + (1 - eta) ** 25 * (W0 - task.A), atol=1e-12)


def test_metric_chance_and_mode_strengths():
    task = build_task("linear_teacher", in_features=5, out_features=5, singular_values=[2, 1], n_eval=4000)
    assert task.chance == pytest.approx(0.5 * (4 + 1))
    model = build_model(ModelSpec(backbone="deep_linear", d_model=5, n_layers=2), task).double()
    with torch.no_grad():
        for w in model.weights:
            w.zero_()
    zero = task.evaluate(model, "val")
    assert zero["mse"] == pytest.approx(task.chance, rel=0.05)  # E‖Ax‖²/2 on fresh N(0, I) inputs
    with torch.no_grad():  # W2 W1 = A exactly
        model.weights[0].copy_(task.A)
        model.weights[1].copy_(torch.eye(5))
    assert task.evaluate(model, "test")["mse"] < 1e-20
    assert torch.allclose(task.mode_strengths(model), torch.tensor([2.0, 1.0], dtype=torch.float64), atol=1e-12)


def test_bad_parameters_and_shapes_are_clear_errors():
    with pytest.raises(ConfigError, match="rank"):
        build_task("linear_teacher", in_features=2, out_features=3, singular_values=[1, 1, 1])
    with pytest.raises(ConfigError, match="n_train"):
        build_task("linear_teacher", in_features=8, n_train=4)
    with pytest.raises(ConfigError, match="> 0"):
        build_task("linear_teacher", singular_values=[1, 0])
    task = build_task("linear_teacher", in_features=4, out_features=3, singular_values=[1])
    b = task.train_batch(0, torch.Generator())
    with pytest.raises(ShapeError, match="3 outputs"):
        task.loss(torch.zeros(len(b), 2, dtype=torch.float64), b)
