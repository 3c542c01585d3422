"""Checks of layerlab.lens.curvature against exact computations: the dense Hessian of
torch.autograd.functional.hessian, Jacobians from torch.func.jacrev, and closed forms."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import curvature as C
from layerlab.lens import hessian as H
from layerlab.tasks.base import Batch

DT = torch.float64


def mlp(seed: int = 0, d_in: int = 4, hidden: int = 5, d_out: int = 3, act: type = nn.Tanh) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, d_out)).to(DT)


def data(n: int = 12, d_in: int = 4, d_out: int = 3, seed: int = 1, classes: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=DT)
    y = torch.randint(0, d_out, (n,), generator=g) if classes else torch.randn(n, d_out, generator=g, dtype=DT)
    return x, y


def flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    return names, shapes, torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflat(theta: torch.Tensor, names, shapes) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n, s in zip(names, shapes):
        k = math.prod(s)
        out[n] = theta[i:i + k].reshape(s)
        i += k
    return out


def exact_hessian(model: nn.Module, loss_of_outputs, x) -> torch.Tensor:
    names, shapes, theta = flat_params(model)
    return torch.autograd.functional.hessian(
        lambda t: loss_of_outputs(functional_call(model, unflat(t, names, shapes), (x,))), theta)


def exact_jacobian(model: nn.Module, x) -> torch.Tensor:
    """(N*C, P): rows of the outputs, flattened, against the flat parameters."""
    names, shapes, theta = flat_params(model)
    J = jacrev(lambda t: functional_call(model, unflat(t, names, shapes), (x,)).reshape(-1))(theta)
    return J


# ----------------------------------------------------------------------------------------------
# The diagonal


def test_exact_diagonal_equals_dense_hessian_diagonal():
    model = mlp()
    x, y = data()
    loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
    Hd = exact_hessian(model, lambda out: nn.functional.cross_entropy(out, y), x)
    op = H.HessianOperator(model, loss, [(x, y)])
    d = C.exact_diagonal(op, block=7)
    assert torch.allclose(d.values, Hd.diagonal(), rtol=1e-10, atol=1e-12)
    parts = d.by_parameter({n: p.shape for n, p in model.named_parameters()})
    assert parts["0.weight"].shape == (5, 4)
    assert torch.equal(parts["2.bias"], d.values[-3:])


def test_hutchinson_diagonal_converges_as_one_over_sqrt_samples_and_is_unbiased():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(30, 30, generator=g, dtype=DT)
    A = A + A.T + torch.diag(torch.linspace(-5, 5, 30, dtype=DT))
    exact = A.diagonal()
    sigma = (A.square().sum(1) - exact.square()).sqrt()  # std of one sample of entry i
    errors = {}
    for n in (16, 256, 4096):
        est = C.diagonal(A, n_samples=n, block=100, generator=torch.Generator().manual_seed(n))
        z = (est.values - exact).abs() / (sigma / math.sqrt(n))
        assert float(z.max()) < 4.5, (n, float(z.max()))  # 30 entries: a max |z| above 4.5 has p < 2e-4
        # the reported standard error is the sample estimate of sigma/sqrt(n)
        assert torch.allclose(est.standard_error, sigma / math.sqrt(n), rtol=0.6 if n == 16 else 0.15)
        errors[n] = float((est.values - exact).norm())
    assert errors[4096] < errors[16] / 4  # 16x the samples: about 1/16 the error
    # unbiased: the mean of many independent 4-probe estimates approaches the diagonal
    gen = torch.Generator().manual_seed(100)
    means = torch.stack([C.diagonal(A, n_samples=4, generator=gen).values for _ in range(200)])
    z = (means.mean(0) - exact).abs() / (sigma / math.sqrt(800))
    assert float(z.max()) < 4.5


def test_hessian_diagonal_of_a_model_matches_autograd_within_its_error():
    model = mlp(2)
    x, y = data(seed=5)
    Hd = exact_hessian(model, lambda out: nn.functional.cross_entropy(out, y), x)
    est = C.hessian_diagonal(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), [(x, y)],
                             n_samples=400, block=64, generator=torch.Generator().manual_seed(0))
    sigma = (Hd.square().sum(1) - Hd.diagonal().square()).sqrt() / math.sqrt(400)
    z = (est.values - Hd.diagonal()).abs() / sigma.clamp_min(1e-12)
    assert float(z.max()) < 4.5
    assert torch.allclose(est.values, Hd.diagonal(), atol=6 * float(sigma.max()))


def test_blocked_diagonal_equals_one_block_and_the_per_probe_loop():
    g = torch.Generator().manual_seed(8)
    A = torch.randn(12, 12, generator=g, dtype=DT)
    A = A + A.T
    one = C.diagonal(A, n_samples=10, block=None, generator=torch.Generator().manual_seed(1))
    blocked = C.diagonal(A, n_samples=10, block=3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(one.values, blocked.values, rtol=1e-12, atol=1e-14)
    assert torch.allclose(one.standard_error, blocked.standard_error, rtol=1e-10, atol=1e-14)
    # the reference: the same Rademacher probes one at a time, z ⊙ (A z) averaged
    gen = torch.Generator().manual_seed(1)
    Z = (torch.randint(0, 2, (10, 12), generator=gen, dtype=torch.int8).to(DT) * 2 - 1)
    ref = torch.stack([z * (A @ z) for z in Z]).mean(0)
    assert torch.allclose(one.values, ref, rtol=1e-12, atol=1e-14)


def test_diagonal_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="n_samples"):
        C.diagonal(torch.eye(3, dtype=DT), n_samples=1)
    with pytest.raises(ConfigError, match="block"):
        C.diagonal(torch.eye(3, dtype=DT), block=0)


# ----------------------------------------------------------------------------------------------
# Gauss-Newton and residual


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "half_mse"])
def test_gauss_newton_plus_residual_is_the_hessian_and_gn_is_jt_hl_j(loss):
    classes = loss == "cross_entropy"
    model = mlp(1)
    x, y = data(classes=classes)
    Hop, G, R = C.gauss_newton_split(model, [(x, y)], loss=loss)
    V = torch.randn(G.dim, 5, generator=torch.Generator().manual_seed(0), dtype=DT)
    HV, GV, RV = Hop.matmat(V), G.matmat(V), R.matmat(V)
    assert (GV + RV - HV).abs().max() <= 1e-10 * HV.abs().max()
    v = V[:, 0]
    assert torch.allclose(G.matvec(v), GV[:, 0], rtol=1e-10, atol=1e-13)
    # dense G against J^T H_L J with J from jacrev and H_L from autograd on the outputs
    J = exact_jacobian(model, x)
    with torch.no_grad():
        out = model(x)
    HL = torch.autograd.functional.hessian(
        lambda o: C.output_loss(o.reshape(out.shape), y, loss), out.reshape(-1))
    Gd = G.dense()
    ref = J.T @ HL @ J
    assert (Gd - ref).abs().max() <= 1e-10 * ref.abs().max()
    assert torch.linalg.eigvalsh(0.5 * (Gd + Gd.T)).min() >= -1e-10 * float(Gd.abs().max())  # PSD
    # H from torch.autograd.functional.hessian
    Hd = exact_hessian(model, lambda o: C.output_loss(o, y, loss), x)
    assert (Hop.dense() - Hd).abs().max() <= 1e-10 * Hd.abs().max()
    assert (R.dense() - (Hd - ref)).abs().max() <= 1e-10 * Hd.abs().max()


def test_closed_form_output_hessian_and_residual_equal_autograd():
    g = torch.Generator().manual_seed(4)
    out = torch.randn(6, 4, generator=g, dtype=DT)
    for loss, y in (("cross_entropy", torch.randint(0, 4, (6,), generator=g)),
                    ("mse", torch.randn(6, 4, generator=g, dtype=DT)),
                    ("half_mse", torch.randn(6, 4, generator=g, dtype=DT))):
        f = lambda o: C.output_loss(o.reshape(6, 4), y, loss)
        HL = torch.autograd.functional.hessian(f, out.reshape(-1))
        U = torch.randn(3, 6, 4, generator=g, dtype=DT)
        got = C.output_hessian_product(out, U, loss)
        want = (HL @ U.reshape(3, -1).T).T.reshape(3, 6, 4)
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-14), loss
        grad = torch.autograd.functional.jacobian(f, out.reshape(-1)).reshape(6, 4)
        assert torch.allclose(C.output_residual(out, y, loss), grad, rtol=1e-10, atol=1e-14), loss


def test_residual_vanishes_for_a_linear_model_with_square_loss():
    model = nn.Linear(4, 3).to(DT)
    x, y = data(classes=False)
    _, G, R = C.gauss_newton_split(model, [(x, y)], loss="mse")
    V = torch.randn(G.dim, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    assert R.matmat(V).abs().max() <= 1e-12
    # and G is then the whole (constant) Hessian: 2/(N C) [x, 1]^T [x, 1] for each output's row
    Gd = G.dense()
    assert float(G.top_eigenvalues(1)[0]) == pytest.approx(float(torch.linalg.eigvalsh(Gd)[-1]), rel=1e-9)
    X1 = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], 1)
    K = 2 * X1.T @ X1 / y.numel()
    ref = torch.zeros(15, 15, dtype=DT)
    for c in range(3):  # parameters: weight (3, 4) row-major, then bias (3,)
        idx = torch.tensor([4 * c + i for i in range(4)] + [12 + c])
        ref[idx[:, None], idx[None, :]] = K
    assert torch.allclose(Gd, ref, rtol=1e-10, atol=1e-14)


def test_residual_is_not_zero_for_cross_entropy_on_a_nonlinear_model_and_instruments_work():
    model = mlp(3)
    x, y = data(seed=9)
    _, G, R = C.gauss_newton_split(model, [(x, y)])
    Rd = R.dense()
    assert Rd.abs().max() > 1e-3
    # krylov instruments on the new operators: trace and top eigenvalue against the dense forms
    est, se = G.trace(n_samples=G.dim * 3, generator=torch.Generator().manual_seed(0))
    assert abs(est - float(G.dense().trace())) <= 1e-8 * abs(est) + 4 * se
    assert float(R.top_eigenvalues(1)[0]) == pytest.approx(float(torch.linalg.eigvalsh(Rd)[-1]), rel=1e-8)


def test_gauss_newton_double_vjp_equals_jvp_and_a_masked_token_batch_works():
    model = mlp(4)
    x, y = data()
    V = torch.randn(sum(p.numel() for p in model.parameters()), 3, generator=torch.Generator().manual_seed(2),
                    dtype=DT)
    a = C.GaussNewtonOperator(model, [(x, y)], jacobian="jvp").matmat(V)
    b = C.GaussNewtonOperator(model, [(x, y)], jacobian="double-vjp").matmat(V)
    assert (a - b).abs().max() <= 1e-12 * a.abs().max()
    # a layerlab Batch of sequences (B, T, d) with a mask: only the scored positions count
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(3, 5, 4, generator=g, dtype=DT)
    ys = torch.randint(0, 3, (3, 5), generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.4
    batch = Batch(xs, ys, mask)
    Hop, G, R = C.gauss_newton_split(model, [batch])
    J = exact_jacobian(model, xs[mask])
    with torch.no_grad():
        out = model(xs[mask])
    HL = torch.autograd.functional.hessian(lambda o: C.output_loss(o.reshape(out.shape), ys[mask], "cross_entropy"),
                                           out.reshape(-1))
    assert (G.dense() - J.T @ HL @ J).abs().max() <= 1e-10 * float((J.T @ HL @ J).abs().max())
    assert (G.matmat(V) + R.matmat(V) - Hop.matmat(V)).abs().max() <= 1e-10 * Hop.matmat(V).abs().max()


def test_operators_are_side_effect_free_and_follow_the_model():
    model = mlp(5)
    x, y = data()
    model.train()
    G = C.GaussNewtonOperator(model, [(x, y)])
    v = torch.randn(G.dim, generator=torch.Generator().manual_seed(0), dtype=DT)
    before = G.matvec(v)
    assert model.training and all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model[2].weight.mul_(2.0)
    assert not torch.allclose(G.matvec(v), before)


def test_gauss_newton_bad_input_is_a_clear_error():
    model = mlp()
    x, y = data()
    with pytest.raises(ConfigError, match="output loss"):
        C.GaussNewtonOperator(model, [(x, y)], loss="hinge")
    with pytest.raises(ConfigError, match="Jacobian-vector product mode"):
        C.GaussNewtonOperator(model, [(x, y)], jacobian="fast")
    with pytest.raises(ShapeError, match="targets of the outputs' shape"):
        C.GaussNewtonOperator(model, [(x, y)], loss="mse").matvec(torch.zeros(43, dtype=DT))
    with pytest.raises(ConfigError, match="pair"):
        C.GaussNewtonOperator(model, [x]).matvec(torch.zeros(43, dtype=DT))


# ----------------------------------------------------------------------------------------------
# Edge of stability


def test_edge_of_stability_summary_reads_sharpening_then_hovering():
    lr = 0.1  # edge at sharpness 20
    steps = list(range(0, 200, 10))
    lam = [5 + i for i in range(15)] + [20.5, 19.5, 21.0, 20.2, 19.8]  # rises, then hovers at 2/lr
    s = C.edge_of_stability_summary(steps, lam, lr, tail=0.25)
    assert s.initial_ratio == pytest.approx(0.25)
    assert s.reach_step == 130  # lam 18 = 0.9 * 20
    assert s.tail_median == pytest.approx(20.2 * lr / 2)
    assert s.sharpened and s.at_edge and s.max_ratio == pytest.approx(1.05)
    flat = C.edge_of_stability_summary(steps, [5.0] * 20, lr)
    assert not flat.sharpened and not flat.at_edge and flat.reach_step is None
    assert math.isnan(flat.as_dict()["reach_step"])
    with pytest.raises(ShapeError):
        C.edge_of_stability_summary([0], [1.0], lr)
    with pytest.raises(ConfigError, match="lr"):
        C.edge_of_stability_summary([0, 1], [1.0, 2.0], -1.0)


def test_edge_of_stability_of_run_reads_probe_and_lr_series():
    sharp = [(0, 4.0), (100, 12.0), (200, 19.0), (300, 21.0), (400, 20.0)]
    lrs = [(1, 0.1), (150, 0.1), (250, 0.05)]  # lr halved at step 250: the edge moves to 40
    s = C.edge_of_stability_of_run(sharp, lrs, tail=0.4)
    assert s.ratio.tolist() == pytest.approx([0.2, 0.6, 0.95, 0.525, 0.5])
    assert s.reach_step == 200 and s.tail_median == pytest.approx(0.5)
    assert C.edge_of_stability_of_run(sharp, 0.1).ratio[-1] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="lr series is empty"):
        C.edge_of_stability_of_run(sharp, [])


@pytest.mark.slow
def test_edge_of_stability_of_a_run_with_the_hessian_probe():
    from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
    from layerlab.train import MemoryRecorder, Trainer

    spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", d_model=8, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=3), train=TrainSpec(steps=10, batch_size=16, log_every=1),
                   seed=0, probes=ProbeSpec(names=("hessian",), schedule="every", every=5, batch_size=32))
    rec = MemoryRecorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the probe-cost advice of a 10-step run
        Trainer(spec, recorder=rec).fit()
    sharp, lrs = rec.series("probe", "hessian/sharpness"), rec.series("train", "lr")
    ratios = dict(rec.series("probe", "hessian/gd_edge_ratio"))
    s = C.edge_of_stability_of_run(sharp, lrs)
    assert [int(t) for t in s.steps] == [t for t, _ in sorted(sharp)] and len(sharp) >= 2
    # the probe's own ratio uses the lr of its step: the lr series read at or before it agrees after warmup
    for t, r in zip(s.steps.tolist(), s.ratio.tolist()):
        if t >= 3:
            assert r == pytest.approx(ratios[int(t)], rel=1e-6)
