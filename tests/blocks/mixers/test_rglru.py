"""RG-LRU recurrent block (Hawk), local MQA and Griffin: forms agree, step = forward, causality,
the RG-LRU's equations and init (De et al. 2024, arXiv:2402.19427), options."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers import CausalSelfAttention
from layerlab.blocks.mixers.rglru import Griffin, LocalMQA, RGLRUBlock, _rope, linear_scan
from layerlab.blocks.norms import RMSNorm
from layerlab.errors import ConfigError, ShapeError

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

D = 16


def make(name, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    if name == "rglru":
        return RGLRUBlock(D, dtype=dtype, **kw)
    if name == "local":
        return LocalMQA(D, window=kw.pop("window", 5), dtype=dtype, **kw)
    return Griffin(D, window=kw.pop("window", 5), dtype=dtype, **kw)


BLOCKS = ["rglru", "local", "griffin"]


# --- contract ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", BLOCKS)
def test_forms_agree(name, dtype):
    block = make(name, dtype)
    for i, (B, L) in enumerate(SHAPES):
        check_forms_agree(block, B, L, seed=i)


@pytest.mark.parametrize("name", BLOCKS)
def test_step_matches_forward(name):
    block = make(name)
    for B, L in [(1, 1), (2, 9), (2, 33)]:
        check_step_matches_forward(block, B, L, tol=1e-10)


@pytest.mark.parametrize("name", BLOCKS)
def test_causal_and_state_size(name):
    block = make(name)
    check_causal(block, L=12)
    check_state_size(block)


def test_state_sizes_are_the_real_buffers():
    """RG-LRU: conv buffer (k-1) N plus h (N); local MQA: W keys, W values, W flags, 1 counter."""
    rg = RGLRUBlock(12, d_rnn=10, kernel_size=4)
    assert rg.state_size == 3 * 10 + 10
    local = LocalMQA(12, n_heads=3, window=7)
    assert local.state_size == 7 * 4 * 2 + 7 + 1
    assert Griffin(12, pattern="rra", n_heads=3, window=7, d_rnn=10).state_size == 2 * 40 + local.state_size


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("mode_index", [0, 1])
def test_gradcheck(name, mode_index):
    torch.manual_seed(1)
    block = {"rglru": lambda: RGLRUBlock(4, d_rnn=3, dtype=torch.float64),
             "local": lambda: LocalMQA(4, n_heads=2, window=2, dtype=torch.float64),
             "griffin": lambda: Griffin(4, pattern="ra", n_heads=2, window=2, d_rnn=3, dtype=torch.float64)}[name]()
    mode = block.modes[mode_index]
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("name", BLOCKS)
def test_state_dict_round_trip(name):
    a, b = make(name, torch.float32, seed=1), make(name, torch.float32, seed=2)
    x = torch.randn(2, 6, D)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", BLOCKS)
def test_dtype_and_shape(name, dtype):
    block = make(name, dtype)
    for mode in block.modes:
        y = block(torch.randn(2, 5, D, dtype=dtype), mode=mode)
        assert y.dtype == dtype and y.shape == (2, 5, D) and torch.isfinite(y.float()).all()
    with pytest.raises(ShapeError, match="got \\(2, 5, 8\\)"):
        block(torch.randn(2, 5, 8, dtype=dtype))


# --- the scan ----------------------------------------------------------------------------
@pytest.mark.parametrize("L", [1, 2, 7, 16, 33])
def test_linear_scan_equals_the_recurrence(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(3, L, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, L, 5, generator=g, dtype=torch.float64)
    h, expected = torch.zeros(3, 5, dtype=torch.float64), []
    for t in range(L):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    assert rel_err(linear_scan(a, b), torch.stack(expected, dim=1)) <= 1e-13


# --- the RG-LRU's equations ----------------------------------------------------------------
def test_log_space_gate_is_a_to_the_c_r():
    """a_t from log a_t = -c r_t softplus(-Λ) equals σ(Λ)^(c r_t) (Eq. 3 and Appendix A)."""
    block = make("rglru")
    v = torch.randn(4, 9, block.d_rnn, dtype=torch.float64)
    a_t, _ = block._gates(v)
    r = torch.sigmoid(block.w_a(v))
    expected = torch.sigmoid(block.lam) ** (block.c * r)
    assert rel_err(a_t, expected) <= 1e-12
    # the recurrence weight lies in [a^c, 1): gates in [0, 1], never negative
    a_c = torch.sigmoid(block.lam) ** block.c
    assert (a_t >= a_c - 1e-15).all() and (a_t < 1).all()


def test_input_normalization_keeps_unit_variance():
    """h_t = a h_{t-1} + sqrt(1 - a²) x_t with unit-variance x keeps Var h ≈ 1 (without the
    factor it would be 1 / (1 - a²) ≈ 5.3 at a = 0.9)."""
    block = RGLRUBlock(4, d_rnn=64, dtype=torch.float64)
    with torch.no_grad():
        block.w_a.weight.zero_(); block.w_a.bias.fill_(0.0)  # r = 1/2
        block.w_x.weight.zero_(); block.w_x.bias.fill_(40.0)  # i = 1
        block.lam.fill_(math.log(0.9 ** (2 / block.c) / (1 - 0.9 ** (2 / block.c))))  # a^(c/2) = 0.9
    g = torch.Generator().manual_seed(0)
    v = torch.randn(256, 80, 64, generator=g, dtype=torch.float64)  # 0.9^160: start forgotten
    a, b = block._gates(v)
    assert torch.allclose(a, torch.full_like(a, 0.9), atol=1e-12)
    h = linear_scan(a, b)
    var = h[:, -1].var().item()  # 16384 samples: SE of the variance ~ 1.1%
    assert abs(var - 1) < 0.05, var


def test_closed_recurrence_gate_preserves_the_state():
    """r_t -> 0 gives a_t -> 1 and sqrt(1 - a_t²) -> 0: the step keeps h and discards the input
    (the paper's Appendix A: the gate can 'preserve all information from the previous history')."""
    block = RGLRUBlock(6, d_rnn=5, dtype=torch.float64)
    with torch.no_grad():
        block.w_a.weight.zero_(); block.w_a.bias.fill_(-30.0)
    conv, h = block.init_state(2)
    h = torch.randn_like(h)
    for _ in range(5):
        _, (conv, h_new) = block.step(torch.randn(2, 6, dtype=torch.float64) * 10, (conv, h))
        assert (h_new - h).abs().max() < 1e-5
        h = h_new


def test_init_a_to_the_c_uniform_in_paper_range():
    """Λ is drawn so that a^c = σ(Λ)^c ~ U[0.9, 0.999] (Sec. 2.4); gates LeCun normal, biases 0."""
    torch.manual_seed(0)
    block = RGLRUBlock(4, d_rnn=2000)
    a_c = (torch.sigmoid(block.lam.double()) ** block.c)
    assert a_c.min() >= 0.9 - 1e-6 and a_c.max() <= 0.999 + 1e-6
    assert abs(a_c.mean().item() - 0.9495) < 0.003  # uniform mean; SE = 0.0286 / sqrt(2000) = 0.0006
    assert abs((a_c < 0.9495).double().mean().item() - 0.5) < 0.05  # median at the midpoint
    assert abs((a_c < 0.92475).double().mean().item() - 0.25) < 0.04  # first quartile
    for gate in (block.w_a, block.w_x):
        assert abs(gate.weight.std().item() * math.sqrt(2000) - 1) < 0.01  # 4M draws
        assert torch.count_nonzero(gate.bias) == 0
    custom = RGLRUBlock(4, d_rnn=500, a_min=0.5, a_max=0.6, c=2.0)
    a_c = torch.sigmoid(custom.lam.double()) ** 2.0
    assert a_c.min() >= 0.5 - 1e-6 and a_c.max() <= 0.6 + 1e-6


def test_default_width_is_four_thirds():
    assert RGLRUBlock(48).d_rnn == 64 and RGLRUBlock(48, d_rnn=10).d_rnn == 10
    assert RGLRUBlock(48, expansion=2).d_rnn == 96


def test_conv_is_causal_short_filter():
    """The Conv1D sees only the last kernel_size inputs of its branch: with the gates frozen the
    RG-LRU input v_t ignores u_s for s <= t - k."""
    block = RGLRUBlock(D, kernel_size=3, dtype=torch.float64)
    u = torch.randn(1, 10, block.d_rnn, dtype=torch.float64)
    v = block._conv(u)
    u2 = u.clone()
    u2[:, 4] += 1.0
    changed = (block._conv(u2) - v).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False] * 4 + [True] * 3 + [False] * 3


# --- local attention and Griffin ---------------------------------------------------------
def test_local_attention_window_limits_the_context():
    torch.manual_seed(3)
    block = LocalMQA(D, n_heads=2, window=3, dtype=torch.float64)
    x = torch.randn(1, 10, D, dtype=torch.float64)
    for mode in block.modes:
        y = block(x, mode=mode)
        for s, seen in ((6, False), (7, True), (9, True)):
            x2 = x.clone()
            x2[:, s] += 1.0
            assert (not torch.allclose(block(x2, mode=mode)[:, 9], y[:, 9])) == seen, (mode, s)


def test_local_attention_with_long_window_is_causal_mqa():
    """window >= L: full causal attention with one shared key/value head (written out here)."""
    torch.manual_seed(4)
    block = LocalMQA(D, n_heads=4, window=50, rope=False, dtype=torch.float64)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    q = block.w_q(x).view(2, 9, 4, 4).transpose(1, 2)
    k, v = block.w_kv(x).chunk(2, dim=-1)
    expected = CausalSelfAttention.reference_attention(q, k.unsqueeze(1).expand_as(q), v.unsqueeze(1).expand_as(q))
    expected = block.w_o(expected.transpose(1, 2).reshape(2, 9, D))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode), expected) <= 1e-12


def test_rope_matches_the_attention_convention():
    x = torch.randn(2, 3, 11, 8, dtype=torch.float64)
    assert torch.equal(_rope(x, torch.arange(11), 10000.0), CausalSelfAttention.rotate(x, 10000.0))


def test_griffin_is_the_residual_pattern():
    torch.manual_seed(5)
    block = Griffin(D, pattern="ra", window=4, dtype=torch.float64)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    z1 = x + block.blocks[0](block.norms[0](x))
    z2 = z1 + block.blocks[1](block.norms[1](z1))
    assert isinstance(block.blocks[0], RGLRUBlock) and isinstance(block.blocks[1], LocalMQA)
    assert isinstance(block.norms[0], RMSNorm)
    assert rel_err(block(x), z2 - x) <= 1e-12
    assert [type(b).__name__ for b in Griffin(D).blocks] == ["RGLRUBlock", "RGLRUBlock", "LocalMQA"]


def test_width_multiple():
    assert Griffin.width_multiple(pattern="rra", n_heads=4) == 8
    assert Griffin.width_multiple(pattern="rra", n_heads=4, rope=False) == 4
    assert Griffin.width_multiple(pattern="rr", n_heads=4) == 1
    assert layerlab.registry.get("mixer", "griffin").width_multiple({"n_heads": 2}) == 4
    assert layerlab.registry.get("mixer", "rglru").width_multiple({}) == 1


def test_registered_with_paper():
    for name in ("rglru", "griffin"):
        entry = layerlab.registry.get("mixer", name)
        assert entry.paper.arxiv == "2402.19427" and entry.paper.year == 2024
    assert isinstance(layerlab.build("mixer", "rglru", 8, c=4.0), RGLRUBlock)


@pytest.mark.parametrize("name, options, words", [
    ("rglru", {"c": 0.0}, "c must be > 0"),
    ("rglru", {"kernel_size": 0}, "kernel_size"),
    ("rglru", {"a_min": 0.99, "a_max": 0.9}, "a_min"),
    ("rglru", {"a_max": 1.0}, "a_max"),
    ("rglru", {"d_rnn": 0}, "d_rnn"),
    ("rglru", {"expansion": 0.0}, "expansion"),
    ("griffin", {"pattern": "rx"}, "pattern"),
    ("griffin", {"pattern": ""}, "pattern"),
    ("griffin", {"window": 0}, "window"),
    ("griffin", {"n_heads": 3}, "divisible"),
    ("griffin", {"n_heads": 16}, "even head dimension"),
    ("griffin", {"n_heads": 0}, "n_heads"),
    ("rglru", {"heads": 2}, "unknown option"),
])
def test_bad_options(name, options, words):
    with pytest.raises(ConfigError, match=words):
        layerlab.build("mixer", name, 16, **options)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="scan, reference"):
        make("rglru")(torch.randn(1, 3, D, dtype=torch.float64), mode="chunked")
