"""Tversky projection layer and the `tversky` channel mixer: hand-computed closed forms, the
vectorized measures against a per-(input, prototype, feature) loop, the XOR claim, gradcheck,
shapes, dtypes, state_dict, init and options."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.mlp import MLP
from layerlab.blocks.channels.tversky import (
    DIFFERENCES,
    INTERSECTIONS,
    TverskyMLP,
    TverskyProjection,
    salience,
    tversky_contrast,
    tversky_contrast_reference,
)
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64
LEADING = [(), (5,), (2, 3, 4)]


def projection(features, prototypes, *, alpha, beta, theta, **kw):
    """A float64 TverskyProjection with the given feature bank, prototypes and scalars."""
    features = torch.tensor(features, dtype=F64)
    prototypes = torch.tensor(prototypes, dtype=F64)
    layer = TverskyProjection(features.shape[1], prototypes.shape[0], n_features=features.shape[0],
                              alpha=alpha, beta=beta, theta=theta, dtype=F64, **kw)
    with torch.no_grad():
        layer.features.copy_(features)
        layer.prototypes.copy_(prototypes)
    return layer


# --- closed forms computed by hand (2-D vectors, 2 features, 1 prototype) ----------------------

def test_hand_computed_feature_only_in_prototype():
    # a = (1, 2), f1 = (1, 0), f2 = (1, -1), π = (2, 1):
    # a.f1 = 1 > 0, a.f2 = -1 <= 0  -> A = {f1};  π.f1 = 2, π.f2 = 1 -> Π = {f1, f2}
    # f(A ∩ Π) = Ψ(1, 2) (f1 only); f(A - Π) = 0; f(Π - A) = π.f2 = 1 (ignorematch)
    # f(A) = 1, f(Π) = 3
    a = torch.tensor([[1.0, 2.0]], dtype=F64)
    theta, alpha, beta = 1.5, 0.7, 0.4
    psi = {"product": 2.0, "min": 1.0, "max": 2.0, "mean": 1.5, "gmean": math.sqrt(2.0),
           "softmin": -math.log(math.exp(-1.0) + math.exp(-2.0))}
    for inter, value in psi.items():
        layer = projection([[1, 0], [1, -1]], [[2, 1]], alpha=alpha, beta=beta, theta=theta,
                           intersection=inter, difference="ignorematch")
        expected = theta * value - alpha * 0.0 - beta * 1.0
        assert abs(layer(a).item() - expected) < 1e-12, inter
    # substractmatch counts only shared features: on f1, π.f1 - a.f1 = 1 > 0, a.f1 - π.f1 < 0
    layer = projection([[1, 0], [1, -1]], [[2, 1]], alpha=alpha, beta=beta, theta=theta, difference="substractmatch")
    assert abs(layer(a).item() - (theta * 2.0 - alpha * 0.0 - beta * 1.0)) < 1e-12
    u = a @ layer.features.T
    assert abs(salience(u).item() - 1.0) < 1e-12
    assert abs(salience(layer.prototypes @ layer.features.T).item() - 3.0) < 1e-12


def test_hand_computed_feature_only_in_input():
    # a = (1, 2), π = (-1, 1), f1 = (1, 0), f2 = (1, -1): a.f = (1, -1), π.f = (-1, -2):
    # A = {f1}, Π = {} -> f(A ∩ Π) = 0, f(A - Π) = 1, f(Π - A) = 0  ->  S = -α
    a = torch.tensor([[1.0, 2.0]], dtype=F64)
    for inter, diff in itertools.product(INTERSECTIONS, ["ignorematch"]):
        layer = projection([[1, 0], [1, -1]], [[-1, 1]], alpha=0.7, beta=0.4, theta=1.5,
                           intersection=inter, difference=diff)
        assert abs(layer(a).item() - (-0.7)) < 1e-12, inter


def test_hand_computed_all_shared_substractmatch():
    # a = (2, 1), π = (1, 3), f1 = (1, 0), f2 = (0, 1): a.f = (2, 1), π.f = (1, 3), all shared.
    # product: 2*1 + 1*3 = 5; min: 1 + 1 = 2; max: 2 + 3 = 5; mean: 1.5 + 2 = 3.5;
    # gmean: sqrt(2) + sqrt(3); softmin: -log(e^-2 + e^-1) - log(e^-1 + e^-3)
    # ignorematch: nothing is unshared -> 0, 0; substractmatch: A - Π = 2 - 1 = 1 (f1), Π - A = 3 - 1 = 2 (f2)
    a = torch.tensor([[2.0, 1.0]], dtype=F64)
    theta, alpha, beta = 0.9, 0.3, 0.6
    psi = {"product": 5.0, "min": 2.0, "max": 5.0, "mean": 3.5, "gmean": math.sqrt(2) + math.sqrt(3),
           "softmin": -math.log(math.exp(-2) + math.exp(-1)) - math.log(math.exp(-1) + math.exp(-3))}
    for inter, value in psi.items():
        for diff, (a_only, p_only) in {"ignorematch": (0.0, 0.0), "substractmatch": (1.0, 2.0)}.items():
            layer = projection([[1, 0], [0, 1]], [[1, 3]], alpha=alpha, beta=beta, theta=theta,
                               intersection=inter, difference=diff)
            expected = theta * value - alpha * a_only - beta * p_only
            assert abs(layer(a).item() - expected) < 1e-12, (inter, diff)


def test_empty_input_is_minus_beta_times_prototype_salience():
    """a = 0 has no features: S(0, π) = -β f(Π) for every measure (the XOR corner (0, 0))."""
    torch.manual_seed(0)
    for inter, diff in itertools.product(INTERSECTIONS, DIFFERENCES):
        layer = TverskyProjection(3, 4, n_features=5, beta=0.8, intersection=inter, difference=diff, dtype=F64)
        y = layer(torch.zeros(3, dtype=F64))
        v = layer.prototypes @ layer.features.T
        expected = -0.8 * salience(v) if diff == "ignorematch" else torch.zeros(4, dtype=F64)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


# --- vectorized measures vs a loop over (input, prototype, feature) ---------------------------

def slow_contrast(x, prototypes, features, alpha, beta, theta, intersection, difference):
    """Eq. 1-5 written out with scalar Python arithmetic, one (input, prototype, feature) at a time."""
    def psi(p, q):
        return {"product": p * q, "min": min(p, q), "max": max(p, q), "mean": (p + q) / 2,
                "gmean": math.sqrt(p * q), "softmin": -math.log(math.exp(-p) + math.exp(-q))}[intersection]

    def diff(p, q):  # contribution of one feature to f(A - B), p = a.f_k, q = b.f_k
        if difference == "ignorematch":
            return p if (p > 0 and q <= 0) else 0.0
        return p - q if (p > 0 and q > 0 and p > q) else 0.0

    out = torch.zeros(len(x), len(prototypes), dtype=F64)
    for n, a in enumerate(x.tolist()):
        for i, b in enumerate(prototypes.tolist()):
            common = a_only = b_only = 0.0
            for f in features.tolist():
                p = sum(ai * fi for ai, fi in zip(a, f))
                q = sum(bi * fi for bi, fi in zip(b, f))
                if p > 0 and q > 0:
                    common += psi(p, q)
                a_only += diff(p, q)
                b_only += diff(q, p)
            out[n, i] = theta * common - alpha * a_only - beta * b_only
    return out


@pytest.mark.parametrize("intersection,difference", list(itertools.product(INTERSECTIONS, DIFFERENCES)))
def test_vectorized_equals_slow_reference(intersection, difference):
    torch.manual_seed(1)
    layer = TverskyProjection(3, 4, n_features=6, alpha=0.3, beta=0.7, theta=1.2, intersection=intersection,
                              difference=difference, init="symmetric", dtype=F64)
    x = torch.randn(2, 5, 3, dtype=F64)
    y = layer(x)
    ref = slow_contrast(x.reshape(-1, 3), layer.prototypes.detach(), layer.features.detach(),
                        0.3, 0.7, 1.2, intersection, difference).reshape(2, 5, 4)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("intersection,difference", list(itertools.product(INTERSECTIONS, DIFFERENCES)))
def test_fast_contrast_equals_pairwise_reference(intersection, difference, dtype, tol):
    """Matrix-product measures against Eq. 3-5 over the (N, P, K) pairs (src's plain form): values
    and gradients in both projections and the three scalars."""
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(7, 9, generator=gen, dtype=dtype).requires_grad_()
    v = torch.randn(5, 9, generator=gen, dtype=dtype).requires_grad_()
    scalars = [torch.tensor(c, dtype=dtype, requires_grad=True) for c in (0.3, 0.7, 1.2)]
    kw = dict(intersection=intersection, difference=difference)
    outs = [fn(u, v, alpha=scalars[0], beta=scalars[1], theta=scalars[2], **kw)
            for fn in (tversky_contrast, tversky_contrast_reference)]
    torch.testing.assert_close(outs[0], outs[1], rtol=tol, atol=tol)
    w = torch.randn(outs[0].shape, generator=gen, dtype=dtype)
    grads = [torch.autograd.grad((o * w).sum(), [u, v, *scalars]) for o in outs]
    for g_fast, g_ref in zip(*grads):
        assert torch.isfinite(g_ref).all()
        torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("intersection", INTERSECTIONS)
def test_alpha_beta_zero_theta_one_is_the_common_feature_term(intersection):
    torch.manual_seed(2)
    x = torch.randn(7, 4, dtype=F64)
    pure = TverskyProjection(4, 3, n_features=5, alpha=0.0, beta=0.0, theta=1.0, intersection=intersection,
                             init="symmetric", dtype=F64)
    u, v = x @ pure.features.T, pure.prototypes @ pure.features.T
    both = (u[:, None, :] > 0) & (v[None, :, :] > 0)
    uu, vv = u[:, None, :].expand(-1, 3, -1), v[None].expand(7, -1, -1)
    psi = {"product": uu * vv, "min": torch.minimum(uu, vv), "max": torch.maximum(uu, vv),
           "mean": (uu + vv) / 2, "gmean": (uu * vv).abs().sqrt(),
           "softmin": -torch.log(torch.exp(-uu) + torch.exp(-vv))}[intersection]
    common = torch.where(both, psi, torch.zeros_like(psi)).sum(-1)
    torch.testing.assert_close(pure(x), common, rtol=1e-12, atol=1e-12)
    if intersection == "product":
        torch.testing.assert_close(pure(x), F.relu(u) @ F.relu(v).T, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        pure.alpha.fill_(0.5)  # the distinctive-feature terms are not zero here, so S changes
    assert (pure(x) - common).abs().max() > 1e-3


# --- the XOR claim ------------------------------------------------------------------------------

XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=F64)
XOR_Y = torch.tensor([0, 1, 1, 0])


def _fit_xor(model, steps=200, lr=0.05):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(XOR_X), XOR_Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(XOR_X).argmax(-1) == XOR_Y).float().mean().item(), loss.item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_tversky_layer_fits_xor_where_linear_cannot(seed):
    """The paper's claim: one Tversky projection (2 inputs -> 2 class prototypes) fits XOR; here with
    product + substractmatch (the paper's best XOR setting), 4 features, U(0, 1) init, Adam
    lr 0.05, 200 steps. (Measured: 20 of 20 seeds fit; with ignorematch 13 of 20 at 300 steps.)"""
    torch.manual_seed(seed)
    tversky = TverskyProjection(2, 2, n_features=4, difference="substractmatch", dtype=F64)
    acc, loss = _fit_xor(tversky)
    assert acc == 1.0 and loss < 0.5
    torch.manual_seed(seed)
    linear = torch.nn.Linear(2, 2, dtype=F64)
    acc_linear, _ = _fit_xor(linear)
    assert acc_linear <= 0.75  # a linear decision rule gets at most 3 of the 4 XOR points right


# --- gradcheck, shapes, dtypes, state_dict ------------------------------------------------------

@pytest.mark.parametrize("intersection,difference", [("product", "ignorematch"), ("min", "substractmatch"),
                                                     ("max", "ignorematch"), ("mean", "substractmatch"),
                                                     ("gmean", "ignorematch"), ("softmin", "substractmatch")])
def test_gradcheck_projection_inputs_and_parameters(intersection, difference):
    torch.manual_seed(3)
    layer = TverskyProjection(3, 2, n_features=4, intersection=intersection, difference=difference,
                              init="symmetric", dtype=F64)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_gradcheck_mixer():
    torch.manual_seed(4)
    block = TverskyMLP(3, hidden=4, n_features=5, dtype=F64)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
    x.grad = None
    block(x).sum().backward()  # every parameter, θ, α, β included, gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


@pytest.mark.parametrize("lead", LEADING, ids=str)
def test_projection_shapes_over_leading_dims(lead):
    torch.manual_seed(5)
    layer = TverskyProjection(8, 3, n_features=6)
    x = torch.randn(*lead, 8)
    assert layer(x).shape == (*lead, 3)
    if lead:  # position-wise
        torch.testing.assert_close(layer(x), layer(x.reshape(-1, 8)).reshape(*lead, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_projection_dtype_preserved(dtype):
    assert TverskyProjection(8, 3, n_features=4, dtype=dtype)(torch.randn(2, 8, dtype=dtype)).dtype == dtype


def test_bfloat16_close_to_float32():
    torch.manual_seed(6)
    block = TverskyMLP(16)
    x = torch.randn(32, 16)
    ref = block(x)
    low = block.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert (low - ref).norm() / ref.norm() < 0.05  # bf16 weights/inputs: ~3 significant digits


# --- the mixer's equation, init, parameter count, options --------------------------------------

def test_mixer_equation():
    torch.manual_seed(8)
    block = TverskyMLP(6, hidden=5, n_features=7, dtype=F64)
    x = torch.randn(4, 6, dtype=F64)
    p = block.proj
    u, v = x @ p.features.T, p.prototypes @ p.features.T
    s = (p.theta * F.relu(u) @ F.relu(v).T - p.alpha * F.relu(u) @ (v <= 0).to(F64).T
         - p.beta * (u <= 0).to(F64) @ F.relu(v).T)
    expected = (s / math.sqrt(7)) @ block.out.weight.T + block.out.bias
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_init_statistics():
    """Symmetric init: x . f_k and π . f_k unit-variance for unit-variance x (each feature present
    in about half of the inputs and of the prototypes); θ, α, β at the paper's 1, 0.5, 0.5."""
    torch.manual_seed(9)
    block = TverskyMLP(64)
    p = block.proj
    x = torch.randn(4096, 64)
    u, v = x @ p.features.T, p.prototypes @ p.features.T  # 4096 x 384 and 64 x 384 values
    assert abs(u.std().item() - 1) < 0.05 and abs(v.std().item() - 1) < 0.1
    assert abs((u > 0).float().mean().item() - 0.5) < 0.02 and abs((v > 0).float().mean().item() - 0.5) < 0.03
    assert (p.theta.item(), p.alpha.item(), p.beta.item()) == (1.0, 0.5, 0.5)
    h = p(x) * block.scale  # hidden activations O(1) thanks to the 1/sqrt(K) scale
    assert 0.3 < h.std(0).mean().item() < 3.0
    uniform = TverskyProjection(5, 3, n_features=4)  # the paper's U(0, 1)
    assert uniform.features.min() >= 0 and uniform.prototypes.max() <= 1


@pytest.mark.parametrize("d", [32, 64, 128])
def test_parameter_count_matches_mlp(d):
    n_tversky = sum(p.numel() for p in TverskyMLP(d).parameters())
    assert n_tversky == (6 * d + d) * d + d * d + d + 3  # (K + hidden) D + hidden D + D + θ, α, β
    n_mlp = sum(p.numel() for p in MLP(d).parameters())
    assert abs(n_tversky / n_mlp - 1) < 0.02  # the MLP also has a hidden bias: 4d more


def test_widths_and_bad_options():
    assert TverskyMLP(16).hidden == 16 and TverskyMLP(16).n_features == 96
    assert TverskyMLP(16, expansion=2.5).hidden == 40
    assert TverskyMLP(16, hidden=10, n_features=3).proj.prototypes.shape == (10, 16)
    with pytest.raises(ShapeError, match="in_features = 4"):
        TverskyProjection(4, 2, n_features=3)(torch.randn(3, 5))
    for bad in [dict(intersection="median"), dict(difference="xor"), dict(n_features=0), dict(hidden=0),
                dict(dropout=1.0), dict(expansion=0.0)]:
        with pytest.raises(ConfigError):
            layerlab.build("channel", "tversky", 8, **bad)
    with pytest.raises(ConfigError, match="init"):
        TverskyProjection(4, 2, n_features=3, init="normal")
    with pytest.raises(ConfigError, match="n_features"):
        TverskyProjection(4, 2, n_features=0)
