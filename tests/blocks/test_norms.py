"""LayerNorm, RMSNorm, EvoNorm-B0/S0: equations, running statistics, batch independence, init and
options. Shapes, dtypes, gradcheck, state_dict, float32 statistics of bfloat16 inputs and the
bfloat16 cast of running_var: the norm contract (tests/blocks/test_norm_contract.py)."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.norms import EvoNormB0, EvoNormS0, LayerNorm, RMSNorm
from layerlab.errors import ConfigError
from layerlab.registry import get

NAMES = ["layernorm", "rmsnorm"]


def randomize(block):
    torch.manual_seed(100)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p))
    return block


@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"elementwise_affine": False}], ids=str)
def test_layernorm_equals_torch(options, dtype, tol):
    block = randomize(LayerNorm(16, **options, dtype=dtype))
    x = 3 * torch.randn(4, 7, 16, dtype=dtype) + 1
    expected = F.layer_norm(x, (16,), block.weight, block.bias, eps=1e-5)
    torch.testing.assert_close(block(x), expected, rtol=tol, atol=tol)
    n_params = {(): 32, ("bias",): 16, ("elementwise_affine",): 0}[tuple(options)]
    assert sum(p.numel() for p in block.parameters()) == n_params


def test_rmsnorm_equation():
    block = randomize(RMSNorm(16, eps=1e-6, dtype=torch.float64))
    x = torch.randn(4, 7, 16, dtype=torch.float64)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * block.weight
    torch.testing.assert_close(block(x), expected, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(block(x), F.rms_norm(x, (16,), block.weight, eps=1e-6))


def test_rmsnorm_output_has_unit_rms():
    torch.manual_seed(0)
    block = RMSNorm(64)
    for scale in (1.0, 30.0):
        x = scale * torch.randn(5, 9, 64)
        rms = block(x).pow(2).mean(-1).sqrt()
        assert (rms - 1).abs().max().item() <= 1e-5
    # small inputs: eps shows, exactly as RMS(y) = sqrt(ms / (ms + eps)) predicts
    x = 0.1 * torch.randn(5, 9, 64, dtype=torch.float64)
    ms = x.pow(2).mean(-1)
    rms = RMSNorm(64, dtype=torch.float64)(x).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.sqrt(ms / (ms + 1e-6)), rtol=1e-12, atol=0)
    assert (rms - 1).abs().max() > 1e-5


def test_layernorm_output_is_standardized():
    torch.manual_seed(1)
    y = LayerNorm(64, eps=0.0, dtype=torch.float64)(5 * torch.randn(8, 64, dtype=torch.float64) - 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(8, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_init(name):
    block = layerlab.build("norm", name, 8)
    assert torch.equal(block.weight, torch.ones(8))
    if getattr(block, "bias", None) is not None:
        assert torch.equal(block.bias, torch.zeros(8))


# ---------------------------------------------------------------------------------------------
# EvoNorm-B0 and EvoNorm-S0
# ---------------------------------------------------------------------------------------------

EVO = ["evonorm_b0", "evonorm_s0"]
F64 = torch.float64


def randomize_evo(block, seed=10):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
    return block


def group_std_plain(x, groups, eps):
    """sqrt(variance + eps) of each group of D/groups consecutive channels, one position at a time."""
    k = x.shape[-1] // groups
    out = torch.empty_like(x)
    for g in range(groups):
        chunk = x[..., g * k:(g + 1) * k]
        mu = chunk.sum(-1, keepdim=True) / k
        out[..., g * k:(g + 1) * k] = torch.sqrt(((chunk - mu) ** 2).sum(-1, keepdim=True) / k + eps)
    return out


def batch_var_plain(x):
    flat = x.reshape(-1, x.shape[-1])
    mu = flat.sum(0) / flat.shape[0]
    return ((flat - mu) ** 2).sum(0) / flat.shape[0]


def b0_plain(block, x, var_b):
    """y = x / max(sqrt(s2_b + eps), v1 x + sqrt(s2_i + eps)) * gamma + beta"""
    eps = block.eps
    den = torch.maximum(torch.sqrt(var_b + eps), block.v * x + group_std_plain(x, block.groups, eps))
    return x / den * block.weight + block.bias


def s0_plain(block, x):
    """y = x sigmoid(v1 x) / sqrt(s2_group + eps) * gamma + beta"""
    sig = 1 / (1 + torch.exp(-block.v * x))
    return x * sig / group_std_plain(x, block.groups, block.eps) * block.weight + block.bias


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_evonorm_b0_equals_formula_in_train_and_eval(groups):
    block = randomize_evo(EvoNormB0(16, groups=groups, dtype=F64))
    x = 2 * torch.randn(4, 7, 16, dtype=F64, generator=torch.Generator().manual_seed(11)) + 0.5
    var_b = batch_var_plain(x)
    with torch.no_grad():
        left = torch.sqrt(var_b + block.eps)
        right = block.v * x + group_std_plain(x, groups, block.eps)
    assert (left > right).any() and (left < right).any()  # both branches of the max are exercised
    y = block.train()(x)
    torch.testing.assert_close(y, b0_plain(block, x, var_b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.running_var, 0.9 * torch.ones(16, dtype=F64) + 0.1 * var_b, rtol=1e-12, atol=0)
    x2 = torch.randn(3, 16, dtype=F64)
    before = block.running_var.clone()
    y2 = block.eval()(x2)
    torch.testing.assert_close(y2, b0_plain(block, x2, before), rtol=1e-12, atol=1e-12)
    assert torch.equal(block.running_var, before)  # eval mode does not update


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_evonorm_s0_equals_formula_in_train_and_eval(groups):
    block = randomize_evo(EvoNormS0(16, groups=groups, dtype=F64))
    x = 2 * torch.randn(4, 7, 16, dtype=F64, generator=torch.Generator().manual_seed(12)) + 0.5
    expected = s0_plain(block, x)
    torch.testing.assert_close(block.train()(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.eval()(x), expected, rtol=1e-12, atol=1e-12)
    assert dict(block.named_buffers()) == {}


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.37])
def test_evonorm_b0_running_var_is_an_exponential_average_of_biased_batch_variances(momentum):
    block = EvoNormB0(8, groups=2, momentum=momentum, dtype=F64)
    gen = torch.Generator().manual_seed(13)
    expected = torch.ones(8, dtype=F64)
    for step in range(4):
        x = (step + 1) * torch.randn(5, 3, 8, dtype=F64, generator=gen)
        block(x)
        expected = (1 - momentum) * expected + momentum * batch_var_plain(x)
    torch.testing.assert_close(block.running_var, expected, rtol=1e-12, atol=1e-15)
    block.reset_running_stats()
    assert torch.equal(block.running_var, torch.ones(8, dtype=F64))


def test_s0_is_batch_independent_b0_only_in_eval_mode():
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(6, 5, 16, dtype=F64, generator=gen)
    other = x.clone()
    other[1:] = 3 * torch.randn(5, 5, 16, dtype=F64, generator=gen) + 1  # change every other example
    s0 = randomize_evo(EvoNormS0(16, dtype=F64))
    for mode in (True, False):
        s0.train(mode)
        torch.testing.assert_close(s0(other)[0], s0(x)[0], rtol=0, atol=1e-14)
    b0 = randomize_evo(EvoNormB0(16, dtype=F64))
    assert not torch.allclose(b0.train()(other)[0], b0(x)[0])  # batch statistics in training
    b0.eval()
    torch.testing.assert_close(b0(other)[0], b0(x)[0], rtol=0, atol=1e-14)
    # S0 is causal over a sequence: a position's output ignores later positions
    later = x.clone()
    later[:, 3:] = 5.0
    torch.testing.assert_close(s0(later)[:, :3], s0(x)[:, :3], rtol=0, atol=1e-14)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", EVO)
def test_evonorm_gradcheck_input_and_parameters(name, train):
    block = randomize_evo(layerlab.build("norm", name, 6, groups=2, dtype=F64))
    if name == "evonorm_b0":
        with torch.no_grad():
            block.running_var.uniform_(0.5, 2.0)
    block.train(train)
    x = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(15), requires_grad=True)
    params = {k: p.detach().clone().requires_grad_(True) for k, p in block.named_parameters()}
    keys = sorted(params)

    def f(x, *ps):
        return torch.func.functional_call(block, dict(zip(keys, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *[params[k] for k in keys]))


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16])
@pytest.mark.parametrize("name", EVO)
def test_evonorm_dtype_preserved(name, dtype):
    block = layerlab.build("norm", name, 8, dtype=dtype)
    assert block.weight.dtype == dtype and block.v.dtype == dtype
    if name == "evonorm_b0":  # the running statistic is float32 or wider
        assert block.running_var.dtype == torch.promote_types(dtype, torch.float32)
    for mode in (True, False):
        assert block.train(mode)(torch.randn(3, 8, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("name", EVO)
def test_evonorm_state_dict_round_trip_with_buffers(name):
    a = randomize_evo(layerlab.build("norm", name, 8))
    for _ in range(3):
        a(torch.randn(5, 8) * 2)  # moves B0's running variance
    b = layerlab.build("norm", name, 8)
    expected_keys = {"weight", "bias", "v"} | ({"running_var"} if name == "evonorm_b0" else set())
    assert set(a.state_dict()) == expected_keys
    x = torch.randn(3, 8)
    a.eval(), b.eval()
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", EVO)
def test_evonorm_init_options_and_errors(name):
    block = layerlab.build("norm", name, 8)
    assert torch.equal(block.weight, torch.ones(8)) and torch.equal(block.bias, torch.zeros(8))
    assert torch.equal(block.v, torch.ones(8)) and block.groups == 4 and block.eps == 1e-5
    if name == "evonorm_b0":
        assert torch.equal(block.running_var, torch.ones(8)) and block.momentum == 0.1
    assert get("norm", name).width_multiple({}) == 4
    assert get("norm", name).width_multiple({"groups": 8}) == 8
    with pytest.raises(ConfigError, match="multiple of groups"):
        layerlab.build("norm", name, 10, groups=4)
    with pytest.raises(ConfigError, match=">= 2 channels"):
        layerlab.build("norm", name, 8, groups=8)
    with pytest.raises(ConfigError, match="groups must be"):
        layerlab.build("norm", name, 8, groups=0)
    with pytest.raises(ConfigError, match="eps"):
        layerlab.build("norm", name, 8, eps=-1.0)
    if name == "evonorm_b0":
        with pytest.raises(ConfigError, match="momentum"):
            layerlab.build("norm", name, 8, momentum=1.5)
