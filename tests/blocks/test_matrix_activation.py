"""Trainable matrix activations (arXiv:2109.09948): the ReLU initialization, leaky ReLU as a
special case, the piecewise-constant definition by hand, reference (dense D(y) y) vs fast form,
the Jacobian D(y), the levels' gradient, options. The contract runs in test_activations.py."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.activations_matrix import MatrixActivation
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64
KNOTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def randomized(n=6, structure="diagonal", seed=0, dtype=F64):
    act = MatrixActivation(n, structure=structure, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in act.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64).to(dtype))
    return act


def level(levels_row, x):
    """levels_row[j] for KNOTS[j-1] <= x < KNOTS[j] (j = 0 below -3, 7 at or above 3)."""
    return levels_row[sum(1 for k in KNOTS if x >= k)]


@pytest.mark.parametrize("structure", ["diagonal", "tridiagonal"])
def test_initialization_is_relu(structure):
    act = MatrixActivation(16, structure=structure, dtype=F64)
    y = 4 * torch.randn(50, 16, dtype=F64)
    assert torch.equal(act(y), F.relu(y)) and torch.equal(act(y, "reference"), F.relu(y))


def test_one_knot_levels_a_1_is_leaky_relu():
    act = MatrixActivation(4, knots=(0.0,), dtype=F64)
    with torch.no_grad():
        act.levels.copy_(torch.tensor([0.1, 1.0], dtype=F64).expand(4, 2))
    y = torch.randn(30, 4, dtype=F64)
    torch.testing.assert_close(act(y), F.leaky_relu(y, 0.1), rtol=0, atol=0)


@pytest.mark.parametrize("structure", ["diagonal", "tridiagonal"])
def test_equals_definition_entry_by_entry(structure):
    act = randomized(5, structure)
    y = 2.5 * torch.randn(7, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    out = act(y)
    for r in range(7):
        for i in range(5):
            v = level(act.levels[i], y[r, i].item()) * y[r, i]
            if structure == "tridiagonal":
                if i + 1 < 5:
                    v = v + level(act.off_levels[0, i], y[r, i + 1].item()) * y[r, i + 1]
                if i > 0:
                    v = v + level(act.off_levels[1, i], y[r, i - 1].item()) * y[r, i - 1]
            assert out[r, i].item() == pytest.approx(v.item(), rel=1e-13, abs=1e-14)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("structure", ["diagonal", "tridiagonal"])
def test_reference_equals_fast_outputs_and_gradients(structure, dtype, tol):
    act = randomized(6, structure, seed=2, dtype=dtype)
    y = (2 * torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(3))).to(dtype).requires_grad_()
    res = []
    for mode in ("fast", "reference"):
        act.zero_grad()
        y.grad = None
        out = act(y, mode)
        (out * torch.arange(6, dtype=dtype)).sum().backward()
        res.append([out.detach(), y.grad.clone()] + [p.grad.clone() for p in act.parameters()])
    for a, b in zip(*res):
        assert ((a - b).norm() / b.norm()).item() <= tol


def test_jacobian_is_D_and_levels_gradient_counts_the_interval():
    act = randomized(4, "tridiagonal", seed=4)
    y = 2 * torch.randn(4, dtype=F64, generator=torch.Generator().manual_seed(5))
    J = torch.autograd.functional.jacobian(act, y)
    torch.testing.assert_close(J, act.matrix(y), rtol=1e-12, atol=1e-14)  # sigma(y) = D(y) y, D locally constant
    ys = 2 * torch.randn(20, 4, dtype=F64, generator=torch.Generator().manual_seed(6))
    act.zero_grad()
    act(ys).sum().backward()
    bucket = torch.bucketize(ys, torch.tensor(KNOTS, dtype=F64), right=True)
    for i in range(4):
        for j in range(8):
            expect = ys[:, i][bucket[:, i] == j].sum()  # d/dt_{i,j} sum_r t_{i,j} y_ri over rows in interval j
            assert act.levels.grad[i, j].item() == pytest.approx(expect.item(), abs=1e-12)


def test_in_the_mlp_and_options():
    mlp = layerlab.build("channel", "mlp", 8, activation="matrix", activation_options={"structure": "tridiagonal"})
    assert mlp.act.d_model == 32 and mlp.act.levels.shape == (32, 8)
    assert torch.isfinite(mlp(torch.randn(2, 8))).all()
    for kw, match in (({"structure": "full"}, "structure"), ({"knots": (1.0, 0.0)}, "increasing"),
                      ({"knots": (-1.0, 1.0)}, "0 must be"), ({"knots": ()}, "knots"), ({"knots": "ab"}, "knots")):
        with pytest.raises(ConfigError, match=match):
            MatrixActivation(4, **kw)
    with pytest.raises(ConfigError, match="d_model"):
        MatrixActivation(0)
    with pytest.raises(ShapeError, match="D = d_model = 4"):
        MatrixActivation(4)(torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="mode"):
        MatrixActivation(4)(torch.zeros(2, 4), mode="slow")
