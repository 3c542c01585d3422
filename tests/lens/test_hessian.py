"""Checks of layerlab.lens.hessian against closed forms and the dense Hessian of
torch.autograd.functional.hessian (an independent reverse-over-reverse computation on a flat vector)."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import hessian as H
from layerlab.lens import krylov

DT = torch.float64


# ----------------------------------------------------------------------------------------------
# Fixtures


def haar(n: int, seed: int) -> torch.Tensor:
    g = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=DT)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r))


class Quadratic(nn.Module):
    """loss = ½ θᵀAθ − bᵀθ: Hessian A everywhere."""

    def __init__(self, A: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.theta = nn.Parameter(torch.randn(A.shape[0], generator=g, dtype=DT))
        self.register_buffer("A", A)
        self.register_buffer("b", torch.randn(A.shape[0], generator=g, dtype=DT))

    def forward(self) -> torch.Tensor:
        return 0.5 * self.theta @ self.A @ self.theta - self.b @ self.theta


def quad_loss(model: nn.Module, batch: object) -> torch.Tensor:
    return model()


def quadratic(eigs: torch.Tensor, seed: int = 0) -> tuple[Quadratic, torch.Tensor]:
    U = haar(len(eigs), seed)
    A = U @ torch.diag(eigs) @ U.T
    return Quadratic(0.5 * (A + A.T), seed=seed + 1), A


# A spectrum with both signs, distinct gaps and a bulk.
KNOWN = torch.tensor([50.0, 20.0, 10.0, 5.0, 2.0, -7.0, -3.0], dtype=DT)
KNOWN = torch.cat([KNOWN, torch.linspace(-1, 1, 33, dtype=DT)])  # P = 40


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 14), nn.Tanh(), nn.Linear(14, 2)).to(DT)  # 100 params


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=DT)
    return x, torch.randn(n, 2, generator=g, dtype=DT)


def reference_hessian(model: nn.Sequential, batches: list) -> torch.Tensor:
    """Dense Hessian of the mean batch loss from torch.autograd.functional.hessian on a flat vector,
    with the tanh MLP written out by hand (no functional_call)."""
    W1, b1, W2, b2 = (p.detach() for p in model.parameters())
    sizes = [W1.numel(), b1.numel(), W2.numel(), b2.numel()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        w1, c1, w2, c2 = torch.split(flat, sizes)
        total = 0.0
        for x, y in batches:
            h = torch.tanh(x @ w1.reshape(W1.shape).T + c1)
            total = total + ((h @ w2.reshape(W2.shape).T + c2 - y) ** 2).mean()
        return total / len(batches)

    flat0 = torch.cat([W1.reshape(-1), b1, W2.reshape(-1), b2])
    return torch.autograd.functional.hessian(loss, flat0)


@pytest.fixture(scope="module")
def mlp_case():
    model = mlp(0)
    batches = [data(32, 1)]
    return model, batches, reference_hessian(model, batches)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------------------------
# Known quadratic


def test_quadratic_products_eigenvalues_and_trace_are_exact():
    model, A = quadratic(KNOWN)
    v = torch.randn(40, generator=torch.Generator().manual_seed(5), dtype=DT)
    assert rel(H.hvp(model, quad_loss, [None], v), A @ v) < 1e-12
    op = H.HessianOperator(model, quad_loss, [None])
    assert op.dim == 40 and rel(op.dense(), A) < 1e-12

    # Lanczos eigenvalues to 1e-8 relative (tolerance of issue 5), three orders.
    top = H.top_eigenvalues(model, quad_loss, [None], k=5)
    assert rel(top, torch.sort(KNOWN, descending=True).values[:5]) < 1e-8
    low = H.top_eigenvalues(model, quad_loss, [None], k=3, which="smallest")
    assert rel(low, torch.sort(KNOWN).values[:3]) < 1e-8
    mag = H.top_eigenvalues(model, quad_loss, [None], k=4, which="magnitude")
    assert rel(mag, torch.tensor([50.0, 20.0, 10.0, -7.0], dtype=DT)) < 1e-8
    assert float(abs(H.sharpness(model, quad_loss, [None]) - 50.0)) < 50.0 * 1e-8

    # Hutch++ with n_samples = 3P: the sketch spans R^P, so the estimate is exact and SE = 0.
    est, se = H.trace(model, quad_loss, [None], n_samples=120, method="hutch++")
    assert abs(est - float(KNOWN.sum())) < 1e-8 * float(KNOWN.abs().sum()) and se < 1e-8
    est, se = H.trace(model, quad_loss, [None], n_samples=400, method="hutchinson")
    assert abs(est - float(KNOWN.sum())) < 3 * se


# ----------------------------------------------------------------------------------------------
# Small MLP against the dense Hessian


def test_mlp_dense_and_top5_match_autograd(mlp_case):
    model, batches, Href = mlp_case
    exact = torch.linalg.eigvalsh(Href)
    op = H.HessianOperator(model, mse, batches)
    assert op.dim == 100
    assert rel(op.dense(), Href) < 1e-10  # float64, same function: rounding only

    vals, vecs = H.top_eigenvalues(model, mse, batches, k=5, return_vectors=True)
    assert rel(vals, torch.flip(exact, [0])[:5]) < 1e-8  # relative to |λ_max|
    residual = (Href @ vecs - vecs * vals).norm(dim=0).max()
    assert float(residual) < 1e-7 * float(exact.abs().max())
    mag = H.top_eigenvalues(model, mse, batches, k=5, which="magnitude")
    ref = exact[torch.argsort(exact.abs(), descending=True)[:5]]
    assert rel(mag, ref) < 1e-8
    # The MLP's Hessian is indefinite away from a minimum: check the negative end too.
    low = H.top_eigenvalues(model, mse, batches, k=2, which="smallest")
    assert exact[0] < 0 and float((low - exact[:2]).abs().max()) < 1e-8 * float(exact.abs().max())


def test_mlp_trace_within_three_standard_errors(mlp_case):
    model, batches, Href = mlp_case
    exact = float(torch.trace(Href))
    n = 200
    est, se = H.trace(model, mse, batches, n_samples=n, method="hutchinson")
    assert abs(est - exact) < 3 * se
    # Rademacher: Var(zᵀHz) = 2 Σ_{i≠j} H_ij², so the SE should be near sqrt(that / n).
    sd = math.sqrt(2 * float((Href**2).sum() - (torch.diagonal(Href) ** 2).sum()) / n)
    assert 0.75 < se / sd < 1.33, (se, sd)

    est, se = H.trace(model, mse, batches, n_samples=60, method="hutch++")
    assert abs(est - exact) < 3 * se and 0 < se


# ----------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature


def test_slq_moments_match_traces_of_powers(mlp_case):
    model, batches, Href = mlp_case
    P, n_probes = Href.shape[0], 40
    dens = H.density(model, mse, batches, n_probes=n_probes, lanczos_steps=12)
    assert dens.nodes.shape == (n_probes, 12)
    assert abs(float(dens.weights.sum()) - 1) < 1e-12
    Hk = torch.eye(P, dtype=DT)
    for k in range(1, 5):
        Hk = Hk @ Href
        exact = float(torch.trace(Hk)) / P
        # The quadrature is exact for degree <= 2*12-1, so the only error is the probe average:
        # Rademacher z, sd of zᵀHᵏz/P is sqrt(2 Σ_{i≠j} (Hᵏ)_ij²)/P; allow 4 sd of the mean.
        sd = math.sqrt(2 * float((Hk**2).sum() - (torch.diagonal(Hk) ** 2).sum())) / P
        tol = 4 * sd / math.sqrt(n_probes)
        assert abs(dens.moment(k) - exact) < tol, (k, dens.moment(k), exact, tol)
        assert 0.5 < dens.moment_standard_error(k) / (sd / math.sqrt(n_probes)) < 2

    # Per probe the Gauss rule reproduces vᵀHᵏv/vᵀv for k <= 2m-1 (here m = 3, k <= 5).
    probes = torch.randn(P, 3, generator=torch.Generator().manual_seed(2), dtype=DT)
    dens = H.density(model, mse, batches, lanczos_steps=3, probes=probes)
    Hk = torch.eye(P, dtype=DT)
    for k in range(1, 6):
        Hk = Hk @ Href
        quad_form = (probes * (Hk @ probes)).sum(0) / (probes**2).sum(0)
        assert rel(dens.probe_moments(k), quad_form) < 1e-9


# ----------------------------------------------------------------------------------------------
# Blocks, batches, product forms


def test_per_layer_block_is_the_dense_sub_block(mlp_case):
    model, batches, Href = mlp_case
    idx = {"0.weight": range(0, 56), "0.bias": range(56, 70), "2.weight": range(70, 98),
           "2.bias": range(98, 100)}
    for sel, names in [(["2."], ["2.weight", "2.bias"]), (["0.weight", "2.bias"],
                                                          ["0.weight", "2.bias"])]:
        op = H.HessianOperator(model, mse, batches, params=sel)
        assert op.names == names
        rows = torch.tensor([i for n in names for i in idx[n]])
        block = Href[rows][:, rows]
        assert rel(op.dense(), block) < 1e-10
        # The output-layer block of a squared loss is I_2 ⊗ (a 15x15 matrix): every eigenvalue
        # is doubled, which one Krylov sequence sees once; k = 4 must return a, a, b, b.
        top = H.top_eigenvalues(model, mse, batches, k=4, params=sel)
        assert rel(top, torch.flip(torch.linalg.eigvalsh(block), [0])[:4]) < 1e-8
    with pytest.raises(ConfigError, match="0.weight"):
        H.HessianOperator(model, mse, batches, params=["0.wieght"])
    frozen = mlp(0)
    frozen[2].bias.requires_grad_(False)
    with pytest.raises(ConfigError, match="frozen"):
        H.HessianOperator(frozen, mse, batches, params=["2.bias"])


def test_split_batches_give_the_hessian_of_the_pooled_loss():
    # batches of 64 and 32 examples against the same 96 examples as one batch: the mean loss over
    # all examples, so every instrument agrees with the pooled one (float64, rounding only)
    model = mlp(1)
    pooled_batch = data(96, 21)
    split = [tuple(t[:64] for t in pooled_batch), tuple(t[64:] for t in pooled_batch)]
    pooled = [pooled_batch]
    Href = reference_hessian(model, pooled)
    assert rel(H.HessianOperator(model, mse, split).dense(), Href) < 1e-12
    assert rel(H.HessianOperator(model, mse, split, weights=[1, 1]).dense(), Href) > 1e-3  # the mean of batch means differs

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(4)

    top_split = H.top_eigenvalues(model, mse, split, k=3, generator=gen())
    top_pooled = H.top_eigenvalues(model, mse, pooled, k=3, generator=gen())
    assert rel(top_split, top_pooled) < 1e-10, (top_split, top_pooled)
    assert rel(top_pooled, torch.linalg.eigvalsh(Href).flip(0)[:3]) < 1e-10
    for method in H.TRACE_METHODS:
        est_s, se_s = H.trace(model, mse, split, n_samples=12, method=method, generator=gen())
        est_p, se_p = H.trace(model, mse, pooled, n_samples=12, method=method, generator=gen())
        assert abs(est_s - est_p) <= 1e-10 * abs(est_p) and abs(se_s - se_p) <= 1e-10 * se_p, method
    d_s = H.density(model, mse, split, n_probes=3, lanczos_steps=6, generator=gen())
    d_p = H.density(model, mse, pooled, n_probes=3, lanczos_steps=6, generator=gen())
    assert rel(d_s.nodes, d_p.nodes) < 1e-10 and rel(d_s.weights, d_p.weights) < 1e-10
    # every product form weighs the batches the same way
    v = torch.randn(100, generator=gen(), dtype=DT)
    for mode in ("forward-over-reverse", "reverse-over-reverse"):
        assert rel(H.hvp(model, mse, split, v, mode=mode), Href @ v) < 1e-12, mode
    # explicit weights: the number of terms each batch's mean runs over
    halves = [H.hvp(model, mse, [b], v) for b in split]
    assert rel(H.hvp(model, mse, split, v, weights=[64, 32]), Href @ v) < 1e-12
    assert rel(H.hvp(model, mse, split, v, weights=[1, 1]), (halves[0] + halves[1]) / 2) < 1e-12
    with pytest.raises(ConfigError, match="weights"):
        H.HessianOperator(model, mse, split, weights=[1])
    with pytest.raises(ConfigError, match="weights"):
        H.HessianOperator(model, mse, split, weights=[1, -1])


def test_batch_sizes_are_read_from_tensors_tuples_dicts_and_len():
    x = torch.zeros(5, 3)
    assert H.batch_size(x) == 5 and H.batch_size((x, x[:, 0])) == 5 and H.batch_size([x]) == 5
    assert H.batch_size({"inputs": x}) == 5

    class Sized:
        def __len__(self) -> int:
            return 7

    assert H.batch_size(Sized()) == 7
    with pytest.raises(ConfigError, match="weights="):
        H.batch_size(None)
    # a batch of unknown size: one weight each, as long as all of them are unknown
    model, _ = quadratic(KNOWN[:4])
    assert H.HessianOperator(model, quad_loss, [None, None]).weights.tolist() == [0.5, 0.5]


class Cube(torch.autograd.Function):
    """x³ with a hand-written backward and no forward-mode (jvp) rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g


def test_product_forms_agree_and_auto_falls_back_without_forward_ad(mlp_case, monkeypatch):
    model, batches, Href = mlp_case
    dense = {mode: H.HessianOperator(model, mse, batches, mode=mode).dense()
             for mode in ("double-backward", "forward-over-reverse", "reverse-over-reverse")}
    assert rel(dense["forward-over-reverse"], dense["reverse-over-reverse"]) < 1e-12
    assert rel(dense["double-backward"], dense["reverse-over-reverse"]) < 1e-12
    assert rel(dense["reverse-over-reverse"], Href) < 1e-10
    auto = H.HessianOperator(model, mse, batches)
    auto.dense()
    assert auto.mode == "double-backward" and auto.fallback_reason is None
    assert auto._forward_ok  # the other columns went through vmapped forward-over-reverse

    torch.manual_seed(3)
    lin = nn.Linear(3, 2).to(DT)
    x = torch.randn(6, 3, dtype=DT)

    def cube_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return Cube.apply(model(batch)).mean()

    def flat_loss(flat: torch.Tensor) -> torch.Tensor:
        return ((x @ flat[:6].reshape(2, 3).T + flat[6:]) ** 3).mean()

    ref = torch.autograd.functional.hessian(
        flat_loss, torch.cat([lin.weight.detach().reshape(-1), lin.bias.detach()]))
    with pytest.raises(RuntimeError):  # Cube has no forward-mode rule
        H.HessianOperator(lin, cube_loss, [x], mode="forward-over-reverse").dense()
    op = H.HessianOperator(lin, cube_loss, [x])
    assert rel(op.dense(), ref) < 1e-10 and op.mode == "double-backward"
    assert not op._forward_ok  # the block fell back to the batched double backward

    # where double backward fails, auto tries forward-over-reverse, then reverse-over-reverse
    def no_double_backward(self, v):
        raise RuntimeError("derivative not implemented (simulated)")

    monkeypatch.setattr(H.HessianOperator, "_double_backward", no_double_backward)
    op = H.HessianOperator(model, mse, batches)
    assert rel(op.dense(), Href) < 1e-10 and op.mode == "forward-over-reverse"
    assert "simulated" in op.fallback_reason
    op = H.HessianOperator(lin, cube_loss, [x])
    assert rel(op.dense(), ref) < 1e-10 and op.mode == "reverse-over-reverse"
    assert "double-backward" in op.fallback_reason and "forward-over-reverse" in op.fallback_reason


def test_kept_gradient_graph_follows_every_change_of_the_model():
    """double-backward keeps the graph of ∇L between products; an optimizer step, a parameter
    replaced and a buffer changed each make the next product that of the new Hessian."""
    model = mlp(4)
    batch = data(12, 5)
    op = H.HessianOperator(model, mse, [batch], mode="double-backward")
    assert op.retain_graph
    v = torch.randn(op.dim, dtype=DT, generator=torch.Generator().manual_seed(0))

    def fresh() -> torch.Tensor:
        return H.HessianOperator(model, mse, [batch], mode="reverse-over-reverse").matvec(v)

    first = op.matvec(v)
    assert rel(first, fresh()) < 1e-12
    assert rel(op.matvec(v), first) == 0  # the kept graph gives the same product
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    mse(model, batch).backward()
    opt.step()  # in place
    second = op.matvec(v)
    assert rel(second, first) > 1e-3 and rel(second, fresh()) < 1e-12
    model[0].weight = nn.Parameter(model[0].weight.detach() * 2)  # a new tensor
    third = op.matvec(v)
    assert rel(third, second) > 1e-3 and rel(third, fresh()) < 1e-12

    quad, A = quadratic(KNOWN[:6])
    qop = H.HessianOperator(quad, quad_loss, [None])
    e0 = torch.eye(6, dtype=DT)[:, 0]
    assert rel(qop.matvec(e0), A[:, 0]) < 1e-12
    quad.A.mul_(3)  # a buffer updated in place
    assert rel(qop.matvec(e0), 3 * A[:, 0]) < 1e-12
    with torch.no_grad():  # products do not depend on the caller's grad mode
        assert rel(H.HessianOperator(quad, quad_loss, [None]).matvec(e0), 3 * A[:, 0]) < 1e-12


# ----------------------------------------------------------------------------------------------
# Edge of stability


def test_gd_is_stable_below_two_over_lr_and_unstable_above():
    eigs = torch.cat([torch.tensor([8.0, 3.0], dtype=DT), torch.linspace(0.1, 1, 18, dtype=DT)])
    model, A = quadratic(eigs, seed=9)
    s = H.sharpness(model, quad_loss, [None])
    assert abs(s - 8.0) < 1e-8
    theta_star = torch.linalg.solve(A, model.b)
    for c in (0.95, 1.05):
        lr = c * 2 / s
        assert abs(H.edge_of_stability(s, lr) - c) < 1e-12
        e = model.theta.detach() - theta_star
        e0 = e.norm()
        for _ in range(600):
            e = e - lr * (A @ e)  # GD on the quadratic, written on the error
        grew = float(e.norm() / e0)  # slowest contraction |1 - lr·0.1|^600 ≈ 5e-7
        assert (grew < 1e-5) if c < 1 else (grew > 1e6), (c, grew)


def test_adam_preconditioner_and_preconditioned_sharpness():
    eigs = torch.linspace(0.5, 6.0, 10, dtype=DT)
    model, A = quadratic(eigs, seed=12)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    for _ in range(5):
        opt.zero_grad()
        model().backward()
        opt.step()
    # P is the matrix in Adam's step w <- w - lr P^{-1} exp_avg: check on one more step.
    opt.zero_grad()
    model().backward()
    before = model.theta.detach().clone()
    opt.step()
    P = H.adam_preconditioner(model, opt)
    step = model.theta.detach() - before
    assert rel(step, -1e-2 * opt.state[model.theta]["exp_avg"] / P) < 1e-12

    # λ_max(P^{-1}A) against numpy's eigenvalues of the non-symmetric product.
    ref = float(np.max(np.linalg.eigvals((A / P[:, None]).numpy()).real))
    ps = H.preconditioned_sharpness(model, quad_loss, [None], opt)
    assert abs(ps - ref) < 1e-8 * ref

    # With P frozen, Adam's EMA-momentum iteration is stable iff ps < (2 + 2β1)/((1-β1) lr).
    beta1 = 0.9
    for c in (0.95, 1.05):
        lr = c * H.stability_threshold(1.0, beta1) / ps
        assert abs(H.edge_of_stability(ps, lr, beta1) - c) < 1e-12
        e = model.theta.detach().clone()
        e0, m = e.norm(), torch.zeros_like(e)
        for _ in range(300):  # spectral radius 0.949 (c=0.95) and 1.48 (c=1.05)
            m = beta1 * m + (1 - beta1) * (A @ e)
            e = e - lr * m / P
        grew = float(e.norm() / e0)
        assert (grew < 1e-3) if c < 1 else (grew > 1e3), (c, grew)


# ----------------------------------------------------------------------------------------------
# Purity, reproducibility, errors


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3),
                                 nn.Linear(6, 2)).to(DT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_side_effect_free_and_reproducible():
    torch.manual_seed(0)
    model = Noisy()
    batches = [data(16, 31), data(16, 32)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mse(model, batches[0]).backward()
    opt.step()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    model.net[2].eval()  # mixed flags must survive
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()

    v = torch.ones(sum(p.numel() for p in model.parameters()), dtype=DT)
    H.hvp(model, mse, batches, v)
    H.top_eigenvalues(model, mse, batches, k=2)
    first = H.trace(model, mse, batches, n_samples=12)
    H.trace(model, mse, batches, n_samples=12, method="hutchinson")
    H.density(model, mse, batches, n_probes=2, lanczos_steps=5)
    H.sharpness(model, mse, batches, params=["net.0."])
    H.preconditioned_sharpness(model, mse, batches, opt)
    op = H.HessianOperator(model, mse, batches)
    op.dense()

    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert all(p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1])
               for n, p in model.named_parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert H.trace(model, mse, batches, n_samples=12) == first  # default generator is seeded


def test_bad_inputs_raise_with_the_fix():
    model, _ = quadratic(KNOWN)
    with pytest.raises(ConfigError, match="k must lie"):
        H.top_eigenvalues(model, quad_loss, [None], k=41)
    with pytest.raises(ConfigError, match="largest"):
        H.top_eigenvalues(model, quad_loss, [None], which="larget")
    with pytest.raises(ConfigError, match="hutch"):
        H.trace(model, quad_loss, [None], method="hutchpp")
    with pytest.raises(ShapeError, match=r"\(40,\)"):
        H.hvp(model, quad_loss, [None], torch.ones(39, dtype=DT))
    with pytest.raises(ConfigError, match=r"\[batch\]"):
        H.hvp(model, quad_loss, None, torch.ones(40, dtype=DT))
    with pytest.raises(ShapeError, match="scalar"):
        H.hvp(model, lambda m, b: m.theta * 1.0, [None], torch.ones(40, dtype=DT))
    with pytest.raises(ConfigError, match="Adam"):
        H.preconditioned_sharpness(model, quad_loss, [None], torch.optim.SGD(model.parameters(),
                                                                            lr=0.1))
    with pytest.raises(ConfigError, match="step"):
        H.adam_preconditioner(model, torch.optim.Adam(model.parameters()))


def test_a_warm_start_at_the_top_eigenvector_needs_fewer_products(mlp_case):
    model, batches, dense = mlp_case
    op = H.HessianOperator(model, mse, batches)
    calls = {"n": 0}
    matmat = op.matmat

    def counted(V):
        calls["n"] += V.shape[1]
        return matmat(V)

    op.matmat = counted
    exact = torch.linalg.eigvalsh(dense)[-1]
    cold = op.top_eigenvalues(k=1, tol=1e-6, generator=torch.Generator().manual_seed(0))
    n_cold, calls["n"] = calls["n"], 0
    top = torch.linalg.eigh(dense).eigenvectors[:, -1]
    warm = op.top_eigenvalues(k=1, tol=1e-6, generator=torch.Generator().manual_seed(0), start_vector=top)
    n_warm = calls["n"]
    assert rel(cold, exact) < 1e-9 and rel(warm, exact) < 1e-9
    assert n_warm < 0.6 * n_cold, (n_warm, n_cold)  # measured 9 against 17
    with pytest.raises(ShapeError, match="start_vector"):
        op.top_eigenvalues(k=1, start_vector=torch.ones(3, dtype=torch.float64))


def test_top_eigenpairs_reports_its_residual_and_products_and_tracks_under_a_budget(mlp_case):
    model, batches, dense = mlp_case
    op = H.HessianOperator(model, mse, batches)
    evals, evecs = torch.linalg.eigh(dense)
    gen = torch.Generator().manual_seed(3)
    capped = op.top_eigenpairs(k=1, max_iter=2, tol=1e-12, generator=gen)
    assert capped.products == 2 and not capped.converged
    y, theta = capped.vectors[:, 0], capped.values[0]
    explicit = float((dense @ y - theta * y).norm() / theta.abs())
    assert abs(capped.residual - explicit) <= 1e-10 * explicit  # the residual it reports is the true one
    assert theta <= evals[-1] * (1 + 1e-12)  # a Ritz value: a lower bound of the top eigenvalue
    # tracking: each call restarts from the last Ritz vector with 2 products; on a fixed Hessian
    # the Ritz value climbs to the top eigenvalue (relative error 0.30 at the first call, 1.4e-3
    # after 5, 6.5e-7 after 30: slowly, since this Hessian's top gap is small)
    vector, values = y, [float(theta)]
    for _ in range(30):
        step = op.top_eigenpairs(k=1, max_iter=2, tol=1e-12, generator=gen, start_vector=vector)
        vector = step.vectors[:, 0]
        values.append(float(step.values[0]))
    assert rel(torch.tensor(values[-1]), evals[-1]) < 1e-5, values[-5:]
    assert values[-1] >= values[0]


def test_float32_krylov_vectors_find_the_same_eigenvalues():
    # (a float64 operator with a float32 basis: tests/lens/test_krylov.py)
    model, _ = quadratic(KNOWN)
    op = H.HessianOperator(model, quad_loss, [None])
    # float32 model: the float32 basis agrees with the float64 one to the products' precision
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))
    g = torch.Generator().manual_seed(2)
    batch = (torch.randn(64, 6, generator=g), torch.randn(64, 3, generator=g))
    op32 = H.HessianOperator(net, mse, [batch])
    def kw() -> dict:
        return dict(k=3, tol=1e-4, generator=torch.Generator().manual_seed(0))

    a = op32.top_eigenpairs(krylov_dtype=torch.float32, **kw())
    b = op32.top_eigenpairs(krylov_dtype=torch.float64, **kw())
    assert a.converged and b.converged
    assert rel(a.values, b.values) < 1e-5, (a.values, b.values)
    with pytest.raises(ConfigError, match="krylov_dtype"):
        op.top_eigenpairs(k=1, krylov_dtype=torch.float16)
    # by default the basis is as precise as the products
    assert krylov._krylov_dtype(op32, None) == torch.float32 and krylov._krylov_dtype(op, None) == torch.float64
    c = op32.top_eigenpairs(**kw())
    assert torch.equal(c.values, a.values) and c.products == a.products


def test_trace_and_density_of_a_float32_model_work_in_float32_and_match_float64():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(5, 24), nn.Tanh(), nn.Linear(24, 2))
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(48, 5, generator=g), torch.randn(48, 2, generator=g)
    net64 = copy.deepcopy(net).double()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for method in ("hutch++", "hutchinson"):
        t32 = H.trace(net, mse, [(x, y)], method=method, generator=gen())
        t64 = H.trace(net64, mse, [(x.double(), y.double())], method=method, generator=gen())
        assert abs(t32[0] - t64[0]) <= 1e-5 * abs(t64[0]) and abs(t32[1] - t64[1]) <= 1e-4 * t64[1] + 1e-6
    d32 = H.density(net, mse, [(x, y)], n_probes=3, lanczos_steps=8, generator=gen())
    d64 = H.density(net64, mse, [(x.double(), y.double())], n_probes=3, lanczos_steps=8, generator=gen())
    assert d32.nodes.dtype == torch.float64
    for k in (1, 2, 3):
        assert abs(d32.moment(k) - d64.moment(k)) <= 1e-4 * abs(d64.moment(k)), k


# ----------------------------------------------------------------------------------------------
# The "did not converge" warning says the truth


@pytest.fixture(scope="module")
def classifier_case():
    """A float64 tanh classifier (442 parameters) after 100 steps of gradient descent: a top
    spectrum whose 5th and 6th eigenvalues are 5% apart, as in the README's k = 5 call."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 10)).to(DT)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(128, 16, generator=g, dtype=DT), torch.randint(0, 10, (128,), generator=g))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        xent(model, batch).backward()
        opt.step()
    exact = torch.linalg.eigvalsh(H.HessianOperator(model, xent, [batch]).dense()).flip(0)
    return model, [batch], exact


def xent(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def test_no_warning_when_the_eigenvalues_have_converged(classifier_case):
    model, batches, exact = classifier_case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning fails the test
        top = H.top_eigenvalues(model, xent, batches, k=5)
    assert rel(top, exact[:5]) < 1e-12
    found = H.top_eigenpairs(model, xent, batches, k=5)
    assert float(found.value_error) <= found.tol  # what the warning reads
    # the bound it reads holds (in exact arithmetic; 1e-14 allows for the rounding of eigvalsh and
    # of the products): every value within value_error · max|θ| of its eigenvalue
    error = float((found.values - exact[:5]).abs().max() / found.values.abs().max())
    assert error <= found.value_error + 1e-14


def test_a_run_capped_before_its_eigenvalues_converge_warns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 10)).to(DT)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(128, 16, generator=g, dtype=DT), torch.randint(0, 10, (128,), generator=g))]
    exact = torch.linalg.eigvalsh(H.HessianOperator(model, xent, batches).dense()).flip(0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        top = H.top_eigenvalues(model, xent, batches, k=5, max_iter=12)
    found = H.top_eigenpairs(model, xent, batches, k=5, max_iter=12)
    assert torch.equal(found.values, top) and not found.converged
    error = float((top - exact[:5]).abs().max() / top.abs().max())
    assert error > found.tol  # the warning is true: the values are off
    # the bound it reports holds: each Ritz value lies within value_error · max|θ| of an eigenvalue
    nearest = (top[:, None] - exact[None, :]).abs().min(dim=1).values
    assert float(nearest.max() / top.abs().max()) <= found.value_error
