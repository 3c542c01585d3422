"""Checks of layerlab.lens.similarity against reference forms, closed forms and statistics."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist, squareform
from torch import nn

from layerlab.errors import ConfigError, ShapeError, UnknownNameError
from layerlab.lens.similarity import (
    MinibatchCKA,
    assign,
    cka,
    cka_matrix,
    gram,
    hsic,
    match_neurons,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64)


def related_pair(n: int = 80, p1: int = 12, p2: int = 9, seed: int = 0):
    """x and a nonlinear, noisy function of it: CKA strictly between 0 and 1."""
    g = gen(seed)
    x = randn(n, p1, g=g)
    y = torch.tanh(x @ randn(p1, p2, g=g) / 2) + 0.3 * randn(n, p2, g=g)
    return x, y


def random_orthogonal(p: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(p, p, g=g))
    return q * torch.sign(torch.diagonal(r))


# ----------------------------------------------------------------------------- HSIC
def test_biased_hsic_is_trace_formula_batched():
    g = gen(1)
    n = 9
    x = randn(3, n, 4, g=g)
    y = randn(3, n, 2, g=g) + x[..., :2]
    k, l = x @ x.mT, torch.exp(-torch.cdist(y, y))
    h = np.eye(n) - np.ones((n, n)) / n
    got = hsic(k, l)
    assert got.shape == (3,)
    for b in range(3):
        ref = np.trace(k[b].numpy() @ h @ l[b].numpy() @ h) / (n - 1) ** 2
        assert abs(got[b].item() - ref) <= 1e-12 * abs(ref)  # tolerance: 1e-12 relative


def test_unbiased_hsic_equals_its_u_statistic():
    # Song et al.: HSIC₁ = 1/(n)₄ Σ_{(i,j,q,r) distinct} [k_ij l_ij + k_ij l_qr − 2 k_ij l_iq].
    g = gen(2)
    n = 7
    x, y = randn(n, 3, g=g), randn(n, 2, g=g)
    y[:, 0] += x[:, 0]
    k = (x @ x.T).numpy()
    l = torch.exp(-torch.cdist(y, y) ** 2).numpy()
    t = np.array(list(itertools.permutations(range(n), 4)))
    i, j, q, r = t.T
    ref = np.mean(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q])
    got = hsic(torch.from_numpy(k), torch.from_numpy(l), debiased=True).item()
    assert abs(got - ref) <= 1e-12 * abs(ref)  # tolerance: 1e-12 relative


def test_unbiased_hsic_is_unbiased_and_biased_is_not():
    # Linear kernels on zero-mean data: population HSIC = ‖Cov(x, y)‖²_F.
    # x = zA, y = zB + e with z ~ N(0, I₃), e ~ N(0, I₂): Cov(x, y) = AᵀB.
    g = gen(3)
    a = torch.tensor([[1.0, 0.5], [0.0, 1.0], [0.5, -0.5]], dtype=F64)
    b = torch.tensor([[0.8, 0.0], [0.3, 1.0], [0.0, 0.6]], dtype=F64)
    pop = (a.T @ b).square().sum().item()
    m, n = 20000, 8
    z = randn(m, n, 3, g=g)
    x, y = z @ a, z @ b + randn(m, n, 2, g=g)
    k, l = x @ x.mT, y @ y.mT
    unb, bia = hsic(k, l, debiased=True), hsic(k, l)
    se_u, se_b = unb.std().item() / m**0.5, bia.std().item() / m**0.5
    assert abs(unb.mean().item() - pop) < 4 * se_u  # within 4 standard errors
    assert abs(bia.mean().item() - pop) > 10 * se_b  # the biased estimator misses by > 10 SE at n = 8


# ----------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(60, 5, 8), (30, 45, 7)])
def test_linear_cka_feature_form_equals_gram_form(debiased, shape):
    n, p1, p2 = shape
    x, y = related_pair(n, p1, p2, seed=4)
    x = x + 3.0  # uncentered input: both forms must center
    fast = cka(x, y, debiased=debiased, form="features")
    ref = cka(x, y, debiased=debiased, form="gram")
    assert abs(fast - ref) <= 1e-12  # tolerance: 1e-12 absolute
    assert 0.05 < abs(ref) < 0.99  # a nontrivial value


def test_linear_cka_of_two_scalars_is_squared_pearson_correlation():
    g = gen(5)
    x = randn(50, g=g)
    y = 0.7 * x + randn(50, g=g)
    r = np.corrcoef(x.numpy(), y.numpy())[0, 1]
    assert abs(cka(x, y) - r**2) <= 1e-12  # closed form, 1e-12 absolute


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_maps_scaling_and_translation(kernel, debiased):
    x, y = related_pair(seed=6)
    g = gen(7)
    base = cka(x, y, kernel, debiased)
    qx, qy = random_orthogonal(x.shape[1], g), random_orthogonal(y.shape[1], g)
    moved = cka(3.7 * x @ qx + 5.0, 0.02 * y @ qy - 1.0, kernel, debiased)
    assert abs(moved - base) <= 1e-10  # tolerance: 1e-10 absolute (issue 5)
    assert 0.1 < base < 0.99


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(kernel, debiased):
    x, _ = related_pair(seed=8)
    assert abs(cka(x, x, kernel, debiased) - 1.0) <= 1e-12
    assert abs(cka(x.reshape(80, 3, 4), x, kernel, debiased) - 1.0) <= 1e-12  # trailing dims flatten


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_matches_an_explicit_reference(debiased):
    x, y = related_pair(n=41, seed=9)  # odd n(n-1)/2 would be even; n = 41 gives 820 pairs

    def ref_gram(a: np.ndarray, frac: float) -> np.ndarray:
        d = pdist(a)
        sigma = frac * np.median(d)
        return np.exp(-squareform(d) ** 2 / (2 * sigma**2))

    def ref_hsic(k: np.ndarray, l: np.ndarray) -> float:
        n = k.shape[0]
        if not debiased:
            h = np.eye(n) - 1 / n
            return np.trace(k @ h @ l @ h) / (n - 1) ** 2
        k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
        one = np.ones(n)
        return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))

    for frac in (0.4, 1.0):
        k, l = ref_gram(x.numpy(), frac), ref_gram(y.numpy(), frac)
        ref = ref_hsic(k, l) / np.sqrt(ref_hsic(k, k) * ref_hsic(l, l))
        sigma = None if frac == 1.0 else frac  # None means the documented default 1.0
        assert abs(cka(x, y, "rbf", debiased, sigma) - ref) <= 1e-12


def test_rbf_cka_tends_to_linear_cka_at_large_bandwidth():
    # exp(−d²/2σ²) = 1 − d²/2σ² + O(σ⁻⁴), and −½ × double-centered squared distances is the
    # centered linear Gram, so RBF CKA → linear CKA with error O((d/σ)²) (Alvarez 2021).
    x, y = related_pair(seed=10)
    lin = cka(x, y)
    e2, e3 = abs(cka(x, y, "rbf", sigma=1e2) - lin), abs(cka(x, y, "rbf", sigma=1e3) - lin)
    assert e3 < 1e-6  # measured 5.2e-8
    assert 50 < e2 / e3 < 200  # error ∝ σ⁻²: ×100 per decade (measured 99.9)
    assert abs(cka(x, y, "rbf", sigma=0.3) - lin) > 1e-2  # and differs at small bandwidth


def test_debiased_cka_of_independent_data_is_near_zero():
    g = gen(11)
    x, y = randn(2000, 100, g=g), randn(2000, 100, g=g)
    biased, deb = cka(x, y), cka(x, y, debiased=True)
    assert biased > 0.03  # biased CKA ≈ p/(n + p) ≈ 0.05 for independent data
    assert abs(deb) < 0.02  # measured -6e-4
    xs, ys = x[:800, :20], y[:800, :20]
    assert cka(xs, ys, "rbf") > 0.02  # measured 0.03
    assert abs(cka(xs, ys, "rbf", debiased=True)) < 0.01


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_matches_pairwise_cka(kernel, debiased):
    x, y = related_pair(n=50, seed=12)
    a = [x, torch.relu(x), x[:, :3]]
    b = [y, y.square()]
    mat = cka_matrix(a, b, kernel=kernel, debiased=debiased)
    assert mat.shape == (3, 2)
    ref = torch.tensor([[cka(u, v, kernel, debiased, form="gram") for v in b] for u in a], dtype=F64)
    assert (mat - ref).abs().max().item() <= 1e-12


def layer_stack(x: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
    w1, w2 = randn(x.shape[1], 32, g=g) / 4, randn(32, 24, g=g) / 5
    h1 = torch.relu(x @ w1)
    return [x, h1, torch.tanh(h1 @ w2)]


def test_minibatch_cka_with_one_batch_is_full_data_debiased_cka():
    g = gen(13)
    x = randn(120, 10, g=g)
    xs, ys = layer_stack(x, g), layer_stack(x + 0.5 * randn(120, 10, g=g), g)
    acc = MinibatchCKA()
    acc.update(xs, ys)
    assert (acc.compute() - cka_matrix(xs, ys, debiased=True)).abs().max().item() <= 1e-12


def test_minibatch_cka_approximates_full_data_cka():
    g = gen(14)
    n, batch = 1200, 200
    x = randn(n, 16, g=g)
    xs = layer_stack(x, g)
    ys = layer_stack(x + 0.5 * randn(n, 16, g=g), g)[1:]
    full = cka_matrix(xs, ys, debiased=True)
    acc = MinibatchCKA()
    for i in range(0, n, batch):
        acc.update([t[i:i + batch] for t in xs], [t[i:i + batch] for t in ys])
    assert acc.batches == n // batch
    err = (acc.compute() - full).abs().max().item()
    assert err < 0.02  # measured 0.003 (different estimators of the same population CKA)
    assert full.min().item() > 0.1  # the values compared are not trivially small


# ----------------------------------------------------------------------------- assignment
def brute_force_best(cost: np.ndarray, maximize: bool) -> float:
    r, c = cost.shape
    best = -np.inf if maximize else np.inf
    if r <= c:
        for cols in itertools.permutations(range(c), r):
            tot = cost[np.arange(r), cols].sum()
            best = max(best, tot) if maximize else min(best, tot)
    else:
        for rows in itertools.permutations(range(r), c):
            tot = cost[rows, np.arange(c)].sum()
            best = max(best, tot) if maximize else min(best, tot)
    return best


def total(cost: np.ndarray, cols: np.ndarray) -> float:
    rows = np.nonzero(cols >= 0)[0]
    return cost[rows, cols[rows]].sum()


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (5, 5), (7, 7), (3, 6), (4, 7), (6, 3)])
@pytest.mark.parametrize("maximize", [False, True])
def test_assignment_is_optimal_against_brute_force(shape, maximize):
    rng = np.random.default_rng(hash(shape) % 1000 + maximize)
    for integer in (False, True):  # integer costs have ties
        cost = rng.integers(0, 5, shape).astype(float) if integer else rng.normal(size=shape)
        cols = assign(torch.from_numpy(cost), maximize=maximize).numpy()
        matched = cols[cols >= 0]
        assert len(matched) == min(shape) and len(set(matched.tolist())) == len(matched)
        assert abs(total(cost, cols) - brute_force_best(cost, maximize)) <= 1e-12


def test_assignment_matches_scipy_on_a_larger_problem():
    rng = np.random.default_rng(15)
    cost = rng.normal(size=(80, 95))
    cols = assign(torch.from_numpy(cost)).numpy()
    r, c = linear_sum_assignment(cost)
    assert abs(total(cost, cols) - cost[r, c].sum()) <= 1e-9


# ----------------------------------------------------------------------------- neuron matching
def test_matching_recovers_a_hidden_permutation_of_units():
    g = gen(16)
    x = randn(400, 20, g=g)
    a = torch.relu(x @ randn(20, 64, g=g))
    perm = torch.randperm(64, generator=g)
    b = a[:, perm] + 0.05 * a.std() * randn(400, 64, g=g)
    partner, corr = match_neurons(a, b)
    # b[:, j] = a[:, perm[j]], so unit i of a sits at j = perm⁻¹(i) in b
    assert torch.equal(partner, torch.argsort(perm))
    assert corr.min().item() > 0.95
    ref = np.corrcoef(a.numpy().T, b.numpy().T)[:64, 64:]
    np.testing.assert_allclose(corr.numpy(), ref[np.arange(64), partner.numpy()], rtol=0, atol=1e-12)


def test_semi_matching_takes_each_units_best_partner_and_may_share():
    g = gen(17)
    a = randn(300, 3, g=g)
    b = torch.stack([a[:, 0] + a[:, 1], a[:, 2], randn(300, g=g)], 1) + 0.1 * randn(300, 3, g=g)
    rho = np.corrcoef(a.numpy().T, b.numpy().T)[:3, 3:]
    semi, _ = match_neurons(a, b, matching="semi")
    assert semi.tolist() == rho.argmax(1).tolist() == [0, 0, 1]  # a0 and a1 share b0
    one, corr = match_neurons(a, b)
    assert sorted(one.tolist()) == [0, 1, 2]
    assert abs(corr.sum().item() - brute_force_best(rho, maximize=True)) <= 1e-12


def test_abs_correlation_matches_sign_flipped_units():
    g = gen(18)
    a = randn(200, 6, g=g)
    perm = torch.randperm(6, generator=g)
    b = -a[:, perm] + 0.05 * randn(200, 6, g=g)
    partner, corr = match_neurons(a, b, method="abs_correlation")
    assert torch.equal(partner, torch.argsort(perm))
    assert corr.max().item() < -0.99  # the reported value is the signed correlation


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_errors_that_name_the_problem():
    x, y = related_pair(n=20)
    with pytest.raises(UnknownNameError, match="linear"):
        cka(x, y, kernel="gaussian")
    with pytest.raises(UnknownNameError, match="gram"):
        cka(x, y, form="dense")
    with pytest.raises(ConfigError, match="form='gram'"):
        cka(x, y, kernel="rbf", form="features")
    with pytest.raises(ConfigError, match="sigma"):
        cka(x, y, sigma=0.5)
    with pytest.raises(ConfigError, match="sigma"):
        cka(x, y, kernel="rbf", sigma=-1.0)
    with pytest.raises(ShapeError, match="same examples"):
        cka(x, y[:10])
    with pytest.raises(ShapeError, match="n ≥ 4"):
        cka(x[:3], y[:3], debiased=True)
    with pytest.raises(ShapeError, match="square"):
        hsic(torch.ones(3, 4), torch.ones(3, 4))
    with pytest.raises(UnknownNameError, match="correlation"):
        match_neurons(x, y, method="cosine")
    with pytest.raises(UnknownNameError, match="one_to_one"):
        match_neurons(x, y, matching="greedy")
    with pytest.raises(ShapeError, match="units_a ≤ units_b"):
        match_neurons(x, y)  # 12 units vs 9
    acc = MinibatchCKA()
    with pytest.raises(ConfigError, match="update"):
        acc.compute()
    acc.update([x], [y])
    with pytest.raises(ShapeError, match="same layers"):
        acc.update([x, x], [y])
    with pytest.raises(ShapeError, match="same n"):
        cka_matrix([x, x[:10]], [y])
    with pytest.raises(ConfigError, match="finite"):
        assign(torch.tensor([[1.0, float("nan")]]))


# ----------------------------------------------------------------------------- side effects
def test_instruments_leave_model_inputs_and_rng_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 8))
    model.train()
    inp = torch.randn(40, 6, requires_grad=True)
    h1 = model[1](model[0](inp))
    out = model(inp)
    out.square().mean().backward(retain_graph=True)
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    inp_grad = inp.grad.clone()
    feats = [h1, out, inp]
    copies = [f.detach().clone() for f in feats]
    rng = torch.get_rng_state()

    results = [cka(h1, out, k, d) for k in ("linear", "rbf") for d in (False, True)]
    mat = cka_matrix(feats, feats, kernel="rbf", debiased=True)
    acc = MinibatchCKA()
    acc.update(feats, feats)
    _, corr = match_neurons(out, h1)
    gram(out, "rbf")

    assert all(isinstance(r, float) for r in results)
    assert not (mat.requires_grad or acc.compute().requires_grad or corr.requires_grad)
    assert torch.equal(inp.grad, inp_grad)  # nothing backpropagated through the inputs
    for f, c in zip(feats, copies):
        assert torch.equal(f.detach(), c)
    for p, v, gr in zip(model.parameters(), params, grads):
        assert torch.equal(p, v) and torch.equal(p.grad, gr)
    assert all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
