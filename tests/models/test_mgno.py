"""MgNO (arXiv:2310.19809): W_Mg with hand-set classical weights is a multigrid V-cycle that solves
the task's Poisson system when iterated; W_Mg is linear; the layer is σ(W u + B); strict options."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models import build_model
from layerlab.models.mgno import MgNO, MgOperator, level_sizes
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def classical_vcycle(n: int, levels: int, smoothing: int = 2, omega: float = 2 / 3) -> MgOperator:
    """A^ℓ = Laplacian stencil at h_ℓ, S = damped Jacobi (ω h_ℓ²/2), R = full weighting, Π = linear interpolation."""
    W = MgOperator(1, 1, n, levels=levels, smoothing=smoothing).double()
    with torch.no_grad():
        for level, size in enumerate(W.sizes):
            h2 = 1.0 / (size + 1) ** 2
            W.A[level].weight.copy_(torch.tensor([[[-1.0, 2.0, -1.0]]], dtype=F64) / h2)
            for S in W.S[level]:
                S.weight.copy_(torch.tensor([[[0.0, omega * h2 / 2, 0.0]]], dtype=F64))
        for R in W.R:
            R.weight.copy_(torch.tensor([[[0.25, 0.5, 0.25]]], dtype=F64))
        for P in W.P:
            P.weight.copy_(torch.tensor([[[0.5, 1.0, 0.5]]], dtype=F64))
    return W


def test_hand_set_w_mg_is_a_converging_v_cycle() -> None:
    task = build_task("poisson1d", n=63, n_train=1, n_eval=8)
    b = task.eval_set("test")
    f = b.inputs[:, None, :]
    W = classical_vcycle(63, levels=6)
    A = W.A[0]
    u = torch.zeros_like(f)
    errors = []
    for _ in range(12):
        u = u + W(f - A(u))  # u <- u + B(f - A u): the V-cycle as an iterative solver
        errors.append(((u[:, 0] - b.targets).norm() / b.targets.norm()).item())
    assert errors[-1] < 1e-8
    assert all(e2 < 0.3 * e1 for e1, e2 in zip(errors[:6], errors[1:7]))  # a multigrid rate, independent of h
    # with a single level (no coarse grid) the same smoother is far slower
    W1 = classical_vcycle(63, levels=1)
    u1 = torch.zeros_like(f)
    for _ in range(12):
        u1 = u1 + W1(f - A(u1))
    assert ((u1[:, 0] - b.targets).norm() / b.targets.norm()).item() > 0.5


def test_w_mg_is_linear_and_the_layer_is_its_equation() -> None:
    torch.manual_seed(0)
    W = MgOperator(2, 3, 15, levels=3, smoothing=2).double()
    u, v = torch.randn(4, 2, 15, dtype=F64), torch.randn(4, 2, 15, dtype=F64)
    torch.testing.assert_close(W(1.5 * u - 0.3 * v), 1.5 * W(u) - 0.3 * W(v), rtol=1e-12, atol=1e-12)
    model = MgNO(15, width=3, depth=2, levels=3).double()
    with torch.no_grad():
        for B in model.biases:
            B.normal_()
    x = torch.randn(5, 15, dtype=F64)
    h = x[:, None]
    for i, (Wi, Bi) in enumerate(zip(model.operators, model.biases)):
        h = Wi(h) + Bi
        h = torch.nn.functional.gelu(h) if i < 2 else h
    torch.testing.assert_close(model(x), h[:, 0], rtol=0, atol=1e-14)


def test_grid_and_options_are_strict() -> None:
    assert level_sizes(63, 6) == [63, 31, 15, 7, 3, 1]
    with pytest.raises(ConfigError, match="2\\^k - 1"):
        level_sizes(64, 2)
    task = build_task("poisson1d", n=63, n_train=2, n_eval=2)
    with pytest.raises(ConfigError, match="unknown mixer_options"):
        build_model(ModelSpec(backbone="operator", mixer="mgno", mixer_options={"p": 3}), task)
    with pytest.raises(ConfigError, match="cannot be coarsened"):
        build_model(ModelSpec(backbone="operator", mixer="mgno", mixer_options={"levels": 7}), task)
    with pytest.raises(ConfigError, match="same grid"):
        build_model(ModelSpec(backbone="operator", mixer="mgno"), type("T", (), {
            "input_kind": "function", "name": "t", "input_dim": 63, "queries": torch.zeros(10, 1)})())
    model = build_model(ModelSpec(backbone="operator", mixer="mgno", d_model=4), task)
    with pytest.raises(ShapeError, match="n = 63"):
        model(torch.randn(2, 31))


def test_trains_through_the_one_trainer() -> None:
    from layerlab.train.trainer import Trainer

    def run(steps: int) -> float:
        spec = RunSpec(task=TaskSpec("poisson1d", {"n": 31, "n_train": 64, "n_eval": 32}),
                       model=ModelSpec(backbone="operator", mixer="mgno", d_model=4, n_layers=1,
                                       mixer_options={"levels": 3}),
                       optim=OptimSpec(lr=3e-3, schedule="constant"),
                       train=TrainSpec(steps=steps, batch_size=16, eval_every=0, log_every=1))
        result = Trainer(spec).fit()
        assert result.status == "done"
        return result.results["test"]["rel_l2"]

    start, trained = run(1), run(60)
    assert math.isfinite(start) and trained < 0.7 * start
