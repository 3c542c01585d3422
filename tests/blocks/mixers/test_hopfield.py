"""Modern Hopfield networks (Ramsauer et al. 2020, arXiv:2008.02217): the memory's claims
(one-step retrieval, energy descent and bounds, averaging at small β, fixed points at large β)
and the causal Hopfield mixer (forms agree, causality, equals attention with V = K W_V)."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers.attention import causal_softmax
from layerlab.blocks.mixers.hopfield import HopfieldMemory, HopfieldMixer, hopfield_energy, hopfield_update
from layerlab.errors import ConfigError, ShapeError

from .contract import SHAPES, check_causal, check_forms_agree, rel_err


def unit_patterns(d, N, seed, scale=1.0):
    X = torch.randn(d, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return scale * X / X.norm(dim=0, keepdim=True)


# --- the associative memory -------------------------------------------------------------
def test_energy_hand_case():
    """X = [e1 e2], ξ = 0: lse = log(2)/β, so E = -log2/β + 0 + log2/β + ½·1 = ½ for any β."""
    X = torch.eye(2, dtype=torch.float64)
    for beta in (0.1, 1.0, 7.0):
        assert abs(hopfield_energy(X, torch.zeros(2, dtype=torch.float64), beta).item() - 0.5) < 1e-12
    # and at ξ = e1 with large β: lse -> 1, E -> -1 + ½ + ½ = 0 (the lower bound is reached)
    assert abs(hopfield_energy(X, X[:, 0], 200.0).item()) < 1e-2


def test_one_update_retrieves_with_exponentially_small_error():
    """N = 2000 patterns in d = 32 (far beyond the classical ~0.14 d): one update from a noisy
    query returns the stored pattern, within the paper's exponential bound (derived for ξ near x_i):
    ||f(ξ) - x_i|| <= 2 M (N-1) exp(-β (Δ_i - 2 M ||ξ - x_i||))."""
    d, N, M, beta = 32, 2000, 10.0, 1.0
    X = unit_patterns(d, N, seed=0, scale=M)
    memory = HopfieldMemory(X, beta=beta)
    gram = X.T @ X
    g = torch.Generator().manual_seed(1)
    for i in range(0, N, 100):
        noise = torch.randn(d, generator=g, dtype=torch.float64)
        xi = X[:, i] + 0.5 * noise / noise.norm()
        delta_i = gram[i, i] - torch.cat((gram[i, :i], gram[i, i + 1:])).max()
        bound = 2 * M * (N - 1) * math.exp(-beta * (delta_i.item() - 2 * M * 0.5))
        err = (memory(xi) - X[:, i]).norm().item()
        assert err <= bound, (i, err, bound)
        assert err <= 1e-6 * M
    # a query half-way between two patterns is not retrieved: the bound needs ξ near x_i
    xi = 0.5 * (X[:, 0] + X[:, 1])
    out = memory(xi)
    assert min((out - X[:, 0]).norm(), (out - X[:, 1]).norm()) > 1e-3


@pytest.mark.parametrize("beta", [0.1, 1.0, 8.0])
def test_energy_never_increases_and_stays_bounded(beta):
    """The update is the concave-convex procedure on E: E(ξ_{t+1}) <= E(ξ_t); and 0 <= E <= 2 M²."""
    X = torch.randn(16, 50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    xi = 3 * torch.randn(16, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    M2 = X.norm(dim=0).max().item() ** 2
    energies = [hopfield_energy(X, xi, beta)]
    for _ in range(25):
        xi = hopfield_update(X, xi, beta)
        energies.append(hopfield_energy(X, xi, beta))
    E = torch.stack(energies)  # (26, 20)
    assert (E[1:] - E[:-1] <= 1e-10).all()
    assert (E[1] < E[0] - 1e-6).all()  # the first update really moves every state downhill
    assert (E[1:] >= -1e-10).all() and (E[1:] <= 2 * M2 + 1e-10).all()


def test_small_beta_averages_the_patterns():
    """β -> 0: softmax(β Xᵀξ) -> uniform, the update returns the mean of the stored patterns."""
    X = torch.randn(8, 30, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    xi = torch.randn(8, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mean = X.mean(dim=1, keepdim=True)
    assert (hopfield_update(X, xi, 1e-9) - mean).abs().max() < 1e-7
    assert (hopfield_update(X, xi, 1.0) - mean).abs().max() > 1e-2  # not so at β = 1


def test_large_beta_fixed_points_near_stored_patterns():
    X = unit_patterns(16, 10, seed=6)
    memory = HopfieldMemory(X, beta=60.0)
    g = torch.Generator().manual_seed(7)
    for i in range(10):
        xi = memory.retrieve(X[:, i] + 0.1 * torch.randn(16, generator=g, dtype=torch.float64), n_updates=8)
        assert (memory.update(xi) - xi).norm() < 1e-10  # a fixed point
        assert (xi - X[:, i]).norm() < 1e-4  # next to x_i


def test_memory_shapes_and_options():
    X = torch.randn(4, 6, dtype=torch.float64)
    memory = HopfieldMemory(X, beta=2.0)
    assert memory(torch.randn(4, dtype=torch.float64)).shape == (4,)
    assert memory(torch.randn(4, 3, dtype=torch.float64), n_updates=2).shape == (4, 3)
    assert memory.energy(torch.randn(4, 3, dtype=torch.float64)).shape == (3,)
    xi = torch.randn(4, dtype=torch.float64)
    assert torch.equal(memory.retrieve(xi, n_updates=0), xi)
    with pytest.raises(ShapeError, match="\\(d,\\) or \\(d, S\\)"):
        memory(torch.randn(5))
    with pytest.raises(ShapeError):
        HopfieldMemory(torch.randn(4))
    with pytest.raises(ConfigError, match="beta"):
        HopfieldMemory(X, beta=0.0)
    with pytest.raises(ConfigError, match="n_updates"):
        memory.retrieve(xi, n_updates=-1)
    assert torch.equal(HopfieldMemory(X).state_dict()["patterns"], X)


# --- the causal Hopfield mixer ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_updates", [3])  # the shared contract runs the default, one update
def test_forms_agree(n_updates, dtype):
    torch.manual_seed(0)
    block = HopfieldMixer(8, n_heads=2, n_updates=n_updates, beta=1.0, dtype=dtype)
    for i, (B, L) in enumerate(SHAPES):
        check_forms_agree(block, B, L, seed=i)


@pytest.mark.parametrize("n_updates", [2])
def test_causal(n_updates):
    torch.manual_seed(1)
    check_causal(HopfieldMixer(12, n_heads=3, n_updates=n_updates, dtype=torch.float64), L=12)


@pytest.mark.parametrize("mode", HopfieldMixer.modes)
def test_gradcheck(mode):
    torch.manual_seed(2)
    block = HopfieldMixer(4, n_heads=2, n_updates=2, bias=True, dtype=torch.float64)
    x = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def test_one_update_is_attention_with_values_from_keys():
    """n_updates = 1, β = 1/sqrt(d_k): softmax(Q Kᵀ / sqrt(d_k) + mask) (K W_V), the paper's layer."""
    torch.manual_seed(3)
    block = HopfieldMixer(12, n_heads=3, dtype=torch.float64)
    assert block.beta == 1 / math.sqrt(4)
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    q, k = block._qk(x)
    v = k @ block.w_v
    heads = causal_softmax(q, k) @ v
    expected = block.w_o(heads.transpose(1, 2).reshape(2, 9, 12))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode), expected) <= 1e-12


def test_more_updates_move_towards_a_fixed_point():
    """At large β the per-position update converges: 6 and 7 updates give nearly the same output,
    while 1 and 2 updates differ."""
    torch.manual_seed(4)
    block = HopfieldMixer(8, n_heads=2, beta=4.0, dtype=torch.float64)
    x = torch.randn(2, 10, 8, dtype=torch.float64)

    def out(n):
        block.n_updates = n
        return block(x)

    assert rel_err(out(7), out(6)) < 1e-6 < rel_err(out(2), out(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", HopfieldMixer.modes)
def test_dtype_and_shape(dtype, mode):
    block = HopfieldMixer(8, n_heads=2, dtype=dtype)
    y = block(torch.randn(2, 5, 8, dtype=dtype), mode=mode)
    assert y.dtype == dtype and y.shape == (2, 5, 8)
    with pytest.raises(ShapeError):
        block(torch.randn(2, 5, 6, dtype=dtype))


def test_init_statistics():
    torch.manual_seed(6)
    block = HopfieldMixer(256, n_heads=4)
    for lin in (block.w_q, block.w_k, block.w_o):
        assert abs(lin.weight.std().item() * 16 - 1) < 0.02
    assert abs(block.w_v.std().item() * 8 - 1) < 0.02  # d_k = 64; 16384 draws


@pytest.mark.parametrize("options, words", [
    ({"n_updates": 0}, "n_updates"),
    ({"beta": -1.0}, "beta"),
    ({"n_heads": 3}, "divisible"),
    ({"n_heads": 0}, "n_heads"),
    ({"updates": 2}, "unknown option"),
])
def test_bad_options(options, words):
    with pytest.raises(ConfigError, match=words):
        layerlab.build("mixer", "hopfield", 16, **options)


def test_registry():
    entry = layerlab.registry.get("mixer", "hopfield")
    assert entry.paper.arxiv == "2008.02217" and entry.width_multiple({"n_heads": 8}) == 8
