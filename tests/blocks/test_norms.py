"""LayerNorm and RMSNorm: equations against torch, statistics precision, shapes and dtypes."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.norms import LayerNorm, RMSNorm
from layerlab.errors import ShapeError

NAMES = ["layernorm", "rmsnorm"]
LEADING = [(), (5,), (2, 3, 1, 4)]


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
def test_bfloat16_input_gives_bfloat16_output_with_float32_statistics(name):
    torch.manual_seed(2)
    block = randomize(layerlab.build("norm", name, 64))  # float32 parameters
    x = (10 * torch.randn(6, 64) + 3).bfloat16()
    y = block(x)
    assert y.dtype == torch.bfloat16
    # statistics in float32: identical to normalizing the float32 copy, rounded once at the end
    assert torch.equal(y, block(x.float()).bfloat16())


@pytest.mark.parametrize("lead", LEADING, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_shape_over_leading_dims(name, lead):
    x = torch.randn(*lead, 8)
    assert layerlab.build("norm", name, 8)(x).shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_preserved(name, dtype):
    block = layerlab.build("norm", name, 8, dtype=dtype)
    assert block.weight.dtype == dtype
    assert block(torch.randn(3, 8, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    torch.manual_seed(3)
    block = randomize(layerlab.build("norm", name, 5, dtype=torch.float64))
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    a = randomize(layerlab.build("norm", name, 8))
    b = layerlab.build("norm", name, 8)
    x = torch.randn(3, 8)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_init_and_wrong_width(name):
    block = layerlab.build("norm", name, 8)
    assert torch.equal(block.weight, torch.ones(8))
    if getattr(block, "bias", None) is not None:
        assert torch.equal(block.bias, torch.zeros(8))
    with pytest.raises(ShapeError, match="D = d_model = 8"):
        block(torch.randn(3, 4))
