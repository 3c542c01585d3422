"""Scalable neural network kernels: unbiasedness and the 1/m MSE of the random-feature
estimator, the layer against the explicit phi(x)^T psi(W) formula, bundling, gradcheck,
shapes, dtypes, state_dict (random buffers included) and options."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.channels.mlp import MLP
from layerlab.blocks.channels.snnk import ACTIVATIONS, SNNKLinear, SNNKMLP, phi, psi
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64
LEADING = [(), (5,), (2, 3, 4)]


def closed_form(x, w, b, activation):
    """f(w.x + b) for one x, w, b; arccos: |x||w| (sin t + (pi - t) cos t) / (2 pi) + b."""
    x, w = x.detach(), w.detach()
    z = float(x @ w)
    if activation == "exp":
        return math.exp(z + b)
    if activation == "sin":
        return math.sin(z + b)
    if activation == "cos":
        return math.cos(z + b)
    nx, nw = float(x.norm()), float(w.norm())
    t = math.acos(max(-1.0, min(1.0, z / (nx * nw))))
    return nx * nw * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi) + b


def estimates(x, w, b, activation, m, replicates, generator):
    """`replicates` independent estimates of f(w.x + b), each from its own m Gaussian projections.

    One draw of m * replicates projections; phi/psi scale by 1/sqrt(M), so M * phi_j psi_j is
    the one-projection estimate of projection j (sin/cos: its cos and sin features together)."""
    M = m * replicates
    omega = torch.randn(M, x.shape[0], generator=generator, dtype=F64)
    terms = phi(x, omega, activation) * psi(w[None], torch.tensor([b], dtype=F64), omega, activation)[0] * M
    if activation in ("sin", "cos"):
        terms = terms[:M] + terms[M:]
    est = terms.reshape(replicates, m).mean(-1)
    return est + b if activation == "arccos" else est


X = torch.tensor([0.3, -0.2, 0.4, 0.1], dtype=F64)
W = torch.tensor([0.2, 0.5, -0.1, 0.3], dtype=F64)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_estimator_is_unbiased(activation):
    """Mean of 4000 independent m = 16 estimates within 4 standard errors of f(w.x + b)."""
    g = torch.Generator().manual_seed(0)
    est = estimates(X, W, 0.3, activation, 16, 4000, g)
    exact = closed_form(X, W, 0.3, activation)
    se = est.std().item() / math.sqrt(len(est))
    assert se < 0.01  # the check is sharp, not vacuous
    assert abs(est.mean().item() - exact) < 4 * se


@pytest.mark.parametrize("activation", ["exp", "sin", "cos"])
def test_mse_falls_as_one_over_m(activation):
    """MSE(m) over 2000 estimates each at m = 64, 256, 1024: each 4x in m divides the MSE by a
    factor in [3.2, 5] (4 expected; the MSE estimates have ~3% relative noise each). For exp the
    MSE also matches the closed form exp(2 w.x)(exp|x + w|^2 - 1) / m within 12%."""
    x, w = 1.5 * X, 1.5 * W
    g = torch.Generator().manual_seed(1)
    exact = closed_form(x, w, 0.0, activation)
    mse = {m: (estimates(x, w, 0.0, activation, m, 2000, g) - exact).pow(2).mean().item() for m in (64, 256, 1024)}
    assert 3.2 < mse[64] / mse[256] < 5.0
    assert 3.2 < mse[256] / mse[1024] < 5.0
    if activation == "exp":
        var = math.exp(2 * float(x @ w)) * (math.exp(float((x + w).pow(2).sum())) - 1)
        for m, value in mse.items():
            assert abs(value * m / var - 1) < 0.12


def test_estimator_converges_for_many_features():
    """The layer itself: with m = 2^17 projections every output is within 0.02 of f(Wx + b)."""
    torch.manual_seed(2)
    for activation in ACTIVATIONS:
        layer = SNNKLinear(4, 3, n_random_features=2**17, activation=activation, dtype=F64)
        x = torch.randn(5, 4, dtype=F64) / 2
        exact = torch.tensor([[closed_form(xi, wi, bi.item(), activation) for wi, bi in zip(layer.weight, layer.bias)]
                              for xi in x], dtype=F64)
        torch.testing.assert_close(layer(x), exact, rtol=0, atol=0.02)
        torch.testing.assert_close(layer.exact(x), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_layer_equals_explicit_formula(activation):
    """y_i = sum_j phi_j(x) psi_j(w_i, b_i), phi and psi written out feature by feature."""
    torch.manual_seed(3)
    layer = SNNKLinear(3, 2, n_random_features=5, activation=activation, dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    y = layer(x)
    omega, m = layer.omega, 5
    for n, xn in enumerate(x):
        for i, (w, b) in enumerate(zip(layer.weight.detach(), layer.bias.detach().tolist())):
            total = 0.0
            for om in omega:
                ox, ow = float(om @ xn), float(om @ w)
                nx2, nw2 = float(xn @ xn), float(w @ w)
                if activation == "exp":
                    total += math.exp(ox - nx2 / 2) * math.exp(ow - nw2 / 2 + b) / m
                elif activation in ("sin", "cos"):
                    g = math.exp(nx2 / 2) * math.exp(ow - nw2 / 2) / m
                    total += g * (math.sin(ox + b) if activation == "sin" else math.cos(ox + b))
                else:
                    total += max(ox, 0.0) * max(ow, 0.0) / m
            expected = total + (b if activation == "arccos" else 0.0)
            assert abs(y[n, i].item() - expected) < 1e-12 * max(1.0, abs(expected))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mixer_bundled_equals_hidden_layer_path(activation):
    """y = W_2 (phi(x~) psi^T + [b_1]) + b_2 with x~ = r x/|x|, in both multiplication orders."""
    torch.manual_seed(4)
    block = SNNKMLP(6, hidden=7, n_random_features=9, activation=activation, radius=1.3, dtype=F64)
    x = torch.randn(5, 6, dtype=F64)
    xt = 1.3 * x / x.norm(dim=-1, keepdim=True)
    h = block.fc1(xt)  # the SNNK layer on the normalized input
    expected = h @ block.fc2.weight.T + block.fc2.bias
    torch.testing.assert_close(block.hidden_layer(x), h, rtol=1e-12, atol=1e-12)
    for bundled in (True, False, None):
        torch.testing.assert_close(block(x, bundled=bundled), expected, rtol=1e-10, atol=1e-12)


def test_mixer_is_invariant_to_input_scale():
    torch.manual_seed(5)
    block = SNNKMLP(8, dtype=F64)
    x = torch.randn(3, 8, dtype=F64)
    torch.testing.assert_close(block(x), block(25.0 * x), rtol=1e-12, atol=1e-12)


# --- gradcheck, shapes, dtypes, state_dict ------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_layer_inputs_and_parameters(activation):
    torch.manual_seed(6)
    layer = SNNKLinear(3, 2, n_random_features=4, activation=activation, dtype=F64)
    x = torch.randn(3, 3, dtype=F64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b, "omega": layer.omega}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_mixer(activation):
    torch.manual_seed(7)
    block = SNNKMLP(3, hidden=4, n_random_features=5, activation=activation, dtype=F64)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


@pytest.mark.parametrize("lead", LEADING, ids=str)
def test_layer_shapes_over_leading_dims(lead):
    torch.manual_seed(8)
    layer = SNNKLinear(8, 3, n_random_features=6)
    x = torch.randn(*lead, 8)
    assert layer(x).shape == (*lead, 3)
    assert layer.phi(x).shape == (*lead, 12)  # sin: cos and sin of 6 projections


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dtype_preserved(dtype, activation):
    block = layerlab.build("channel", "snnk", 8, activation=activation, dtype=dtype)
    assert all(p.dtype == dtype for p in block.parameters()) and block.fc1.omega.dtype == dtype
    y = block(torch.randn(3, 8, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_bfloat16_close_to_float32():
    torch.manual_seed(9)
    block = SNNKMLP(16)
    x = torch.randn(32, 16)
    ref = block(x)
    low = block.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert (low - ref).norm() / ref.norm() < 0.05


def test_state_dict_round_trip_includes_random_projections():
    torch.manual_seed(10)
    a, b = layerlab.build("channel", "snnk", 8), layerlab.build("channel", "snnk", 8)
    assert not torch.equal(a.fc1.omega, b.fc1.omega)
    assert "fc1.omega" in a.state_dict()
    x = torch.randn(3, 8)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.fc1.omega, a.fc1.omega)
    assert torch.equal(a(x), b(x))


def test_generator_draws_the_projections():
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    a = SNNKMLP(8, generator=g1)
    b = SNNKMLP(8, generator=g2)
    assert torch.equal(a.fc1.omega, b.fc1.omega)
    expected = torch.randn(32, 8, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a.fc1.omega, expected)  # omega ~ N(0, I), drawn from the given generator
    state = torch.random.get_rng_state()
    SNNKLinear(8, 4, n_random_features=16, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(state, torch.random.get_rng_state())  # W, b: nn.Linear's default init
    g = torch.Generator().manual_seed(3)
    omega = SNNKLinear(8, 4, n_random_features=16, generator=g, dtype=F64).omega
    assert torch.equal(omega, torch.randn(16, 8, generator=torch.Generator().manual_seed(3)).to(F64))


# --- parameter count, options ---------------------------------------------------------------------

@pytest.mark.parametrize("d", [8, 32, 64])
def test_parameter_count_equals_mlp(d):
    block = SNNKMLP(d)
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in MLP(d).parameters())
    assert block.hidden == 4 * d and block.fc1.n_random_features == 4 * d


def test_init_statistics():
    """W_1, b_1, W_2, b_2 as nn.Linear (U(-1/sqrt(fan_in), 1/sqrt(fan_in))); omega ~ N(0, 1)."""
    torch.manual_seed(12)
    block = SNNKMLP(64)
    for w, fan_in in ((block.fc1.weight, 64), (block.fc2.weight, 256)):
        assert abs(w.std().item() * math.sqrt(3 * fan_in) - 1) < 0.02 and w.abs().max() <= fan_in ** -0.5
    omega = block.fc1.omega
    assert abs(omega.mean().item()) < 0.01 and abs(omega.std().item() - 1) < 0.01  # 16384 draws


def test_bad_options():
    with pytest.raises(ShapeError, match="in_features = 4"):
        SNNKLinear(4, 2)(torch.randn(3, 5))
    for bad in [dict(activation="relu"), dict(radius=0.0), dict(radius=float("inf")), dict(n_random_features=0),
                dict(hidden=0), dict(dropout=1.0)]:
        with pytest.raises(ConfigError):
            layerlab.build("channel", "snnk", 8, **bad)
    with pytest.raises(ConfigError, match="n_random_features"):
        SNNKLinear(4, 2, n_random_features=0)
