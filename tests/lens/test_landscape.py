"""Checks of layerlab.lens.landscape against closed forms and hand-built references."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import landscape

DT = torch.float64


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(DT)


def data(seed: int = 0, n: int = 12) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, generator=g, dtype=DT), torch.randn(n, 2, generator=g, dtype=DT)) for _ in range(2)]


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


class Vector(nn.Module):
    """A bare parameter vector; the losses below read it directly (no forward)."""

    def __init__(self, values) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(values, dtype=DT).clone())


def state(model: nn.Module):
    return ({n: p.detach().clone() for n, p in model.named_parameters()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            [m.training for m in model.modules()])


def test_barrier_of_identical_models_is_zero():
    a = mlp(0)
    b = copy.deepcopy(a)
    value = landscape.barrier(a, b, mse, data())
    assert abs(value) <= 1e-12, value


def test_interpolate_endpoints_equal_each_models_loss():
    a, b, batches = mlp(0), mlp(1), data()
    alphas, losses = landscape.interpolate(a, b, mse, batches, alphas=11)
    with torch.no_grad():
        la = sum(mse(a, bt) for bt in batches) / len(batches)
        lb = sum(mse(b, bt) for bt in batches) / len(batches)
    assert alphas.shape == losses.shape == (11,)
    assert abs(losses[0] - la) <= 1e-12 and abs(losses[-1] - lb) <= 1e-12
    assert abs(la - lb) > 1e-3  # the two endpoints really differ


def test_interpolate_matches_a_manually_interpolated_copy():
    a, b, batches = mlp(0), mlp(1), data()
    alpha = 0.3
    manual = copy.deepcopy(a)
    with torch.no_grad():
        for (_, pm), pa_, pb_ in zip(manual.named_parameters(), a.parameters(), b.parameters()):
            pm.copy_((1 - alpha) * pa_ + alpha * pb_)
        expected = sum(mse(manual, bt) for bt in batches) / len(batches)
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=[alpha])
    assert abs(losses[0] - expected) <= 1e-12


def test_batches_of_unequal_size_give_the_loss_of_the_pooled_examples():
    """The path's loss is the mean over all examples: batches of 12 and 4 give what the same 16
    examples give as one batch (an unweighted mean of batch means would not)."""
    a, b = mlp(0), mlp(1)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 3, generator=g, dtype=DT), torch.randn(16, 2, generator=g, dtype=DT)
    split = [(x[:12], y[:12]), (x[12:], y[12:])]
    _, pooled = landscape.interpolate(a, b, mse, [(x, y)], alphas=5)
    _, parts = landscape.interpolate(a, b, mse, split, alphas=5)
    assert torch.allclose(parts, pooled, rtol=1e-12, atol=0)
    unweighted = (mse(a, split[0]) + mse(a, split[1])).item() / 2
    assert abs(unweighted - pooled[0].item()) > 1e-3  # the two means really differ here


def test_per_layer_interpolation_moves_only_that_layer():
    a, b, batches = mlp(0), mlp(1), data()
    alpha = 0.6
    manual = copy.deepcopy(a)  # only layer "2" (the second Linear) interpolated, by hand
    with torch.no_grad():
        manual[2].weight.copy_((1 - alpha) * a[2].weight + alpha * b[2].weight)
        manual[2].bias.copy_((1 - alpha) * a[2].bias + alpha * b[2].bias)
        expected = sum(mse(manual, bt) for bt in batches) / len(batches)
        everything = copy.deepcopy(manual)
        everything[0].weight.copy_((1 - alpha) * a[0].weight + alpha * b[0].weight)
        wrong = sum(mse(everything, bt) for bt in batches) / len(batches)
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=[alpha], params=["2"])
    assert abs(losses[0] - expected) <= 1e-12
    assert abs(losses[0] - wrong) > 1e-4  # moving layer 0 too would have been visible
    # exact parameter names work like the prefix
    _, by_name = landscape.interpolate(a, b, mse, batches, alphas=[alpha], params=["2.weight", "2.bias"])
    assert by_name[0] == losses[0]


def bn_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).to(DT)


def teacher(x: torch.Tensor) -> torch.Tensor:
    M = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.3]], dtype=DT)
    return 2 * torch.tanh(x @ M)


def teacher_batches(seed: int, n: int, count: int) -> list:
    """Inputs shifted to mean 1, scale 2 (running statistics far from 0 and 1), teacher targets."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 3, generator=g, dtype=DT) for _ in range(count)]
    return [(2 * x + 1, teacher(x)) for x in xs]


def trained_bn_pair() -> tuple[nn.Sequential, nn.Sequential, list]:
    """Two BatchNorm MLPs trained on a tanh teacher from different seeds for 150 and 200 steps
    (parameters, running statistics and num_batches_tracked all differ), and held-out batches.
    Before buffers travelled with the path: L(α=1) = 0.552 against b's own 0.184, and
    barrier(a, b) = 0.969 against barrier(b, a) = 0.885."""
    models = []
    for seed, steps in ((0, 150), (1, 200)):
        model = bn_mlp(seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for batch in teacher_batches(seed + 10, 32, steps):
            opt.zero_grad()
            mse(model, batch).backward()
            opt.step()
        models.append(model.eval())
    return models[0], models[1], teacher_batches(5, 16, 2)


@pytest.fixture(scope="module")
def bn_pair() -> tuple[nn.Sequential, nn.Sequential, list]:
    return trained_bn_pair()  # the instruments leave the models as they were (tested below)


def own_loss(model: nn.Module, batches) -> float:
    with torch.no_grad():
        return float(sum(mse(model, bt) for bt in batches) / len(batches))


def test_batchnorm_path_ends_are_the_models_and_the_barrier_is_symmetric(bn_pair):
    a, b, batches = bn_pair
    assert int(a[1].num_batches_tracked) != int(b[1].num_batches_tracked)
    assert (a[1].running_mean - b[1].running_mean).abs().max() > 1e-2
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=5)
    assert abs(float(losses[0]) - own_loss(a, batches)) <= 1e-12
    assert abs(float(losses[-1]) - own_loss(b, batches)) <= 1e-12  # was a's statistics with b's weights
    ab = landscape.barrier(a, b, mse, batches, alphas=11)
    ba = landscape.barrier(b, a, mse, batches, alphas=11)
    assert abs(ab - ba) <= 1e-12, (ab, ba)
    assert ab > 0.5  # a real barrier between the two solutions
    # reversing the path reverses the losses
    _, back = landscape.interpolate(b, a, mse, batches, alphas=5)
    assert torch.allclose(back.flip(0), losses, rtol=0, atol=1e-12)


def test_floating_buffers_are_interpolated_and_integer_buffers_come_from_the_nearer_end(bn_pair):
    a, b, batches = bn_pair
    for alpha, nearer in ((0.3, a), (0.8, b)):
        manual = copy.deepcopy(a)
        with torch.no_grad():
            for (_, pm), pa_, pb_ in zip(manual.named_parameters(), a.parameters(), b.parameters()):
                pm.copy_((1 - alpha) * pa_ + alpha * pb_)
            bn = manual[1]
            bn.running_mean.copy_((1 - alpha) * a[1].running_mean + alpha * b[1].running_mean)
            bn.running_var.copy_((1 - alpha) * a[1].running_var + alpha * b[1].running_var)
            bn.num_batches_tracked.copy_(nearer[1].num_batches_tracked)
        _, losses = landscape.interpolate(a, b, mse, batches, alphas=[alpha])
        assert abs(float(losses[0]) - own_loss(manual, batches)) <= 1e-12
    # a per-layer path moves the buffers of the modules it moves, and no others
    hybrid = copy.deepcopy(a)
    hybrid[1].load_state_dict(b[1].state_dict())
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=[0.0, 1.0], params="1")
    assert abs(float(losses[1]) - own_loss(hybrid, batches)) <= 1e-12
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=[1.0], params="0")
    moved = copy.deepcopy(a)
    moved[0].load_state_dict(b[0].state_dict())  # the Linear only: a's running statistics
    assert abs(float(losses[0]) - own_loss(moved, batches)) <= 1e-12


def reestimated(model: nn.Module, batches) -> nn.Module:
    """A copy whose BatchNorm statistics are recomputed from `batches` by hand: the mean over
    batches of each batch's mean and unbiased variance of the BatchNorm input."""
    out = copy.deepcopy(model)
    bn = out[1]
    with torch.no_grad():
        hs = [out[0](x) for x, _ in batches]
        bn.running_mean.copy_(torch.stack([h.mean(0) for h in hs]).mean(0))
        bn.running_var.copy_(torch.stack([h.var(0, unbiased=True) for h in hs]).mean(0))
    return out.eval()


def test_reestimated_batchnorm_statistics_along_the_path(bn_pair):
    a, b, batches = bn_pair
    buffers_before = {n: t.clone() for n, t in a.named_buffers()}
    _, losses = landscape.interpolate(a, b, mse, batches, alphas=[0.0, 0.4, 1.0], buffers="reestimate")
    assert abs(float(losses[0]) - own_loss(reestimated(a, batches), batches)) <= 1e-12
    assert abs(float(losses[-1]) - own_loss(reestimated(b, batches), batches)) <= 1e-12
    middle = copy.deepcopy(a)
    with torch.no_grad():
        for pm, pa_, pb_ in zip(middle.parameters(), a.parameters(), b.parameters()):
            pm.copy_(0.6 * pa_ + 0.4 * pb_)
    assert abs(float(losses[1]) - own_loss(reestimated(middle, batches), batches)) <= 1e-12
    # statistics from other data than the loss's
    other = teacher_batches(9, 20, 3)
    _, on_other = landscape.interpolate(a, b, mse, batches, alphas=[1.0], buffers="reestimate",
                                        stat_batches=other)
    assert abs(float(on_other[0]) - own_loss(reestimated(b, other), batches)) <= 1e-12
    ab = landscape.barrier(a, b, mse, batches, alphas=11, buffers="reestimate")
    ba = landscape.barrier(b, a, mse, batches, alphas=11, buffers="reestimate")
    assert abs(ab - ba) <= 1e-12
    # the model's own statistics, momentum and mode are untouched
    assert all(torch.equal(t, buffers_before[n]) for n, t in a.named_buffers())
    assert a[1].momentum == 0.1 and not a[1].training
    with pytest.raises(ConfigError, match="buffers"):
        landscape.interpolate(a, b, mse, batches, buffers="model_a")


def test_layer_barriers_group_by_layer_and_block():
    a, b, batches = mlp(0), mlp(1), data()
    per_layer = landscape.layer_barriers(a, b, mse, batches, alphas=11)
    assert list(per_layer) == ["0", "2"]
    assert per_layer["2"] == landscape.barrier(a, b, mse, batches, alphas=11, params="2")
    assert all(v >= 0 for v in per_layer.values())
    per_param = landscape.layer_barriers(a, b, mse, batches, alphas=11, by="parameter")
    assert list(per_param) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    groups = landscape.parameter_groups(nn.ModuleDict({"blocks": nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]),
                                                       "head": nn.Linear(2, 1)}), "block")
    assert groups == {"blocks.0": ["blocks.0.weight", "blocks.0.bias"],
                      "blocks.1": ["blocks.1.weight", "blocks.1.bias"],
                      "head": ["head.weight", "head.bias"]}


def test_barrier_of_a_convex_quadratic_is_zero_and_the_gap_is_closed_form():
    # L(w) = 1/2 (w - c)^T A (w - c), A positive definite: along the segment the gap to the
    # chord is exactly -alpha (1 - alpha) / 2 * (wa - wb)^T A (wa - wb) < 0.
    g = torch.Generator().manual_seed(3)
    M = torch.randn(4, 4, generator=g, dtype=DT)
    A = M @ M.T + 0.5 * torch.eye(4, dtype=DT)
    c = torch.randn(4, generator=g, dtype=DT)

    def quad(model, batch):
        r = model.w - c
        return 0.5 * r @ A @ r * batch

    wa, wb = torch.randn(4, generator=g, dtype=DT), torch.randn(4, generator=g, dtype=DT)
    a, b = Vector(wa), Vector(wb)
    batches = [1.0, 1.0]
    value = landscape.barrier(a, b, quad, batches)
    assert value <= 1e-15, value  # the endpoints give 0, every interior point is below the chord
    alphas, losses = landscape.interpolate(a, b, quad, batches, alphas=21)
    la, lb = losses[0], losses[-1]
    gap = losses - ((1 - alphas) * la + alphas * lb)
    expected = -alphas * (1 - alphas) / 2 * ((wa - wb) @ A @ (wa - wb))
    assert torch.allclose(gap, expected, rtol=0, atol=1e-12)
    assert (gap[1:-1] < 0).all()


def test_barrier_of_a_double_well_equals_its_closed_form():
    # L(w) = s [(w0^2 - 1)^2 + w1^2] with minima near w0 = -1 and w0 = +1. From (-1, 0.3) to
    # (1, -0.3): with u = alpha (1 - alpha), gap(alpha) = s (16 u^2 - 0.36 u), maximal at
    # alpha = 1/2 (u = 1/4): barrier = s (1 - 0.09) = 0.91 s; s = mean of the batch scales = 2.
    def well(model, scale):
        w = model.w
        return scale * ((w[0] ** 2 - 1) ** 2 + w[1] ** 2)

    a, b = Vector([-1.0, 0.3]), Vector([1.0, -0.3])
    batches = [1.0, 3.0]
    value = landscape.barrier(a, b, well, batches, alphas=21)
    assert abs(value - 0.91 * 2) <= 1e-12, value
    alphas, losses = landscape.interpolate(a, b, well, batches, alphas=41)
    u = alphas * (1 - alphas)
    gap = losses - ((1 - alphas) * losses[0] + alphas * losses[-1])
    assert torch.allclose(gap, 2 * (16 * u ** 2 - 0.36 * u), rtol=0, atol=1e-12)
    # a grid that misses alpha = 1/2 gives a lower value (the sup is approached from below)
    coarse = landscape.barrier(a, b, well, batches, alphas=[0.0, 0.4, 1.0])
    assert abs(coarse - 2 * (16 * 0.24 ** 2 - 0.36 * 0.24)) <= 1e-12


def test_random_direction_filter_normalization():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4)).to(DT)
    d = landscape.random_direction(model, generator=torch.Generator().manual_seed(5))
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            dims = tuple(range(1, p.dim()))
            dn, pn = (torch.linalg.vector_norm(t, dim=dims) for t in (d[name], p.detach()))
            rel = ((dn - pn).abs() / pn).max()
            assert rel <= 1e-12, (name, rel)
        else:
            assert torch.equal(d[name], torch.zeros_like(p))
    kept = landscape.random_direction(model, one_d="filter")
    assert abs(kept["0.bias"].norm() - model[0].bias.norm()) <= 1e-12
    # reproducible by default, different for another seed, raw Gaussian without normalization
    again = landscape.random_direction(model)
    assert torch.equal(kept["2.weight"], again["2.weight"])
    other = landscape.random_direction(model, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other["2.weight"], again["2.weight"])
    raw = landscape.random_direction(model, filter_normalize=False)
    assert not torch.allclose(raw["2.weight"].norm(dim=1), model[2].weight.norm(dim=1))
    with pytest.raises(ConfigError, match="one_d"):
        landscape.random_direction(model, one_d="keep")


def test_loss_slice_of_linear_regression_equals_the_quadratic_closed_form():
    # For y_hat = W x + b, L(theta + c1 d1 + c2 d2) = a0 + sum_i b_i c_i + sum_ij Q_ij c_i c_j with
    # r = W x + b - y, e_i = D_i x + f_i: a0 = <r, r>, b_i = 2 <r, e_i>, Q_ij = <e_i, e_j>
    # (<.,.> the mean over the batch and outputs).
    torch.manual_seed(1)
    model = nn.Linear(3, 2).to(DT)
    batches = data(4)
    d1 = landscape.random_direction(model, generator=torch.Generator().manual_seed(1), one_d="filter")
    flat = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(2),
                       dtype=DT)  # a flat vector in named_parameters order, as a Hessian eigenvector
    d2 = {"weight": flat[:6].reshape(2, 3), "bias": flat[6:]}
    c1 = torch.linspace(-1, 1, 5, dtype=DT)
    c2 = torch.linspace(-0.5, 2, 4, dtype=DT)

    def closed(c1, c2):
        out = torch.zeros(len(c1), len(c2), dtype=DT)
        C1, C2 = torch.meshgrid(c1, c2, indexing="ij")
        with torch.no_grad():
            for x, y in batches:
                r = model(x) - y
                e = [x @ d["weight"].T + d["bias"] for d in (d1, d2)]
                a0 = (r * r).mean()
                b = [2 * (r * ei).mean() for ei in e]
                Q = [[(ei * ej).mean() for ej in e] for ei in e]
                out += (a0 + b[0] * C1 + b[1] * C2 + Q[0][0] * C1 ** 2 + 2 * Q[0][1] * C1 * C2
                        + Q[1][1] * C2 ** 2) / len(batches)
        return out

    got = landscape.loss_slice(model, mse, batches, [d1, flat], [c1, c2])
    expected = closed(c1, c2)
    assert got.shape == (5, 4)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12), (got - expected).abs().max()
    one = landscape.loss_slice(model, mse, batches, [d1], c1)  # 1-D: the c2 = 0 line
    assert one.shape == (5,)
    assert torch.allclose(one, closed(c1, torch.zeros(1, dtype=DT))[:, 0], rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        base = sum(mse(model, bt) for bt in batches) / len(batches)
    assert abs(one[2] - base) <= 1e-12  # c1 = 0 is the model itself


def test_bad_inputs_raise_errors_that_name_the_problem():
    a, batches = mlp(0), data()
    with pytest.raises(ShapeError, match="different parameters"):
        landscape.interpolate(a, nn.Linear(3, 2).to(DT), mse, batches)
    with pytest.raises(ConfigError, match="unknown parameter or module prefix"):
        landscape.interpolate(a, mlp(1), mse, batches, params=["3"])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        landscape.barrier(a, mlp(1), mse, batches, alphas=[0.5, 1.5])
    with pytest.raises(ShapeError, match="one entry per trainable parameter"):
        landscape.loss_slice(a, mse, batches, [torch.zeros(3, dtype=DT)], [torch.zeros(2)])
    with pytest.raises(ShapeError, match="coordinate"):
        landscape.loss_slice(a, mse, batches, [landscape.random_direction(a)], [torch.zeros(2), torch.zeros(2)])
    with pytest.raises(ConfigError, match="grouping"):
        landscape.layer_barriers(a, mlp(1), mse, batches, by="module")


def test_side_effect_free():
    a, b, batches = mlp(0), mlp(1), data()
    a.append(nn.Dropout(0.5))  # train mode + dropout: an instrument must not switch or draw from it
    b.append(nn.Dropout(0.5))
    a.train()
    a[0].eval()
    for p in a.parameters():
        p.grad = torch.randn_like(p)
    before, rng = state(a), torch.get_rng_state()
    landscape.barrier(a, b, mse, batches, alphas=5)
    landscape.layer_barriers(a, b, mse, batches, alphas=3)
    d = landscape.random_direction(a)
    landscape.loss_slice(a, mse, batches, [d], [torch.linspace(-1, 1, 3)])
    after = state(a)
    assert torch.equal(torch.get_rng_state(), rng)
    assert after[2] == before[2]
    for n in before[0]:
        assert torch.equal(after[0][n], before[0][n]) and torch.equal(after[1][n], before[1][n])
    assert [p.grad is not None for p in a.parameters()] == [True] * 4
