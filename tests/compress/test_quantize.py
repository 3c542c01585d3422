"""RTN post-training quantization: the round trip is within half a step per entry, codes stay in range,
wide codes are a no-op, the input model is never modified, savings read the stored codes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.compress import TECHNIQUES, apply_technique
from layerlab.compress.quantize import QuantizedLinear, code_dtype, dequantize, quantize_linears, rtn, symmetric_rtn
from layerlab.compress.savings import measure_cost
from layerlab.errors import ConfigError


def _w(rows=7, cols=13, dtype=torch.float64, seed=0):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    w[3] = 0  # a zero row
    w[5, 2] = 40.0  # an outlier
    return w


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 9), nn.LayerNorm(9), nn.ReLU(), nn.Linear(9, 9, bias=False), nn.ReLU(),
                         nn.Linear(9, 4))


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 12])
def test_round_trip_within_half_a_step_and_codes_in_range(bits):
    w = _w()
    codes, scale = symmetric_rtn(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert codes.dtype == code_dtype(bits) and scale.dtype == w.dtype and scale.shape == (7,)
    assert int(codes.abs().max()) <= qmax
    err = (dequantize(codes, scale) - w).abs()
    # exact bound s_i / 2, up to float64 rounding of the product (2^-53 relative)
    assert torch.all(err <= scale[:, None] / 2 + 2.0**-52 * w.abs())
    assert torch.equal(scale, w.abs().amax(1) / qmax)
    nonzero = scale > 0
    assert torch.all(codes[nonzero].abs().amax(1) == qmax)  # each row's largest entry maps to +-q_max
    assert scale[3] == 0 and torch.all(codes[3] == 0) and torch.all(dequantize(codes, scale)[3] == 0)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_float32(bits):
    w = _w(dtype=torch.float32, seed=1)
    codes, scale = symmetric_rtn(w, bits)
    err = (dequantize(codes, scale) - w).abs().double()
    ulp = torch.finfo(torch.float32).eps * w.abs().double()  # one rounding of the float32 product
    assert torch.all(err <= scale.double()[:, None] / 2 + ulp)


@pytest.mark.parametrize("bits", [24, 32])
def test_wide_codes_are_a_no_op_within_float_eps(bits):
    w = _w(dtype=torch.float32, seed=2)
    codes, scale = symmetric_rtn(w, bits)
    assert codes.dtype == torch.int32
    err = (dequantize(codes, scale) - w).abs()
    assert torch.all(err <= torch.finfo(torch.float32).eps * w.abs().amax(1, keepdim=True))


def test_rtn_copies_and_quantizes_every_linear():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = rtn(net, 4, None)
    assert out is not net
    assert [type(m) for m in net] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]  # input untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert [type(out[i]) for i in (0, 3, 5)] == [QuantizedLinear] * 3
    assert all(out[i].bits_per_weight == 4 and out[i].codes.dtype == torch.int8 for i in (0, 3, 5))
    assert out[3].bias is None and torch.equal(out[1].weight, net[1].weight)  # norms untouched
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    ref = x
    for i, m in enumerate(net):  # the reference: the dense net with every Linear weight replaced by Q(W)
        if isinstance(m, nn.Linear):
            c, s = symmetric_rtn(m.weight, 4)
            ref = F.linear(ref, dequantize(c, s), m.bias)
        else:
            ref = m(ref)
    assert torch.equal(out(x), ref)
    out[0].bias.data.add_(1.0)  # the copy owns its tensors
    assert torch.equal(net[0].bias, before["0.bias"])


def test_registry_levels_exclude_and_bad_input():
    entry = TECHNIQUES.entry("rtn")
    assert entry.meta["level_kind"] == "bits" and entry.meta["levels"] == (8, 6, 4, 3)
    assert entry.paper.arxiv == "2509.23500"
    net = _net()
    out = apply_technique("rtn", net, 8.0, None, exclude=["5"])
    assert type(out[5]) is nn.Linear and type(out[0]) is QuantizedLinear
    for level in (1, 2.5, 33):
        with pytest.raises(ConfigError, match="bits"):
            apply_technique("rtn", net, level, None)
    with pytest.raises(ConfigError, match="match no Linear"):
        rtn(net, 4, None, exclude=["nope"])
    with pytest.raises(ConfigError, match="no nn.Linear"):
        rtn(nn.Sequential(nn.ReLU()), 4, None)
    with pytest.raises(ConfigError, match="exclude|no option"):
        apply_technique("rtn", net, 4, None, bogus=1)


def test_tied_embedding_head_is_left_float():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    net = nn.Sequential(emb, nn.Linear(4, 4), head)
    out = rtn(net, 4, None)
    assert type(out[1]) is QuantizedLinear and type(out[2]) is nn.Linear


def test_savings_count_codes_at_their_width():
    net = _net()
    out = quantize_linears(net, {"0": 3, "3": 8, "5": 4})
    x = torch.randn(5, 6)
    cost = measure_cost(out, x)
    # codes at their declared width, scales (one float32 per row) and biases at 32, the LayerNorm at 32
    expected = (9 * 6 * 3 + 9 * 32 + 9 * 32) + (9 * 9 * 8 + 9 * 32) + (4 * 9 * 4 + 4 * 32 + 4 * 32) + 2 * 9 * 32
    assert cost.bits == expected
    assert measure_cost(net, x).bits == 32 * sum(p.numel() for p in net.parameters())


def test_state_dict_round_trip():
    out = rtn(_net(), 3, None)
    fresh = rtn(_net(seed=5), 3, None)
    fresh.load_state_dict(out.state_dict())
    x = torch.randn(4, 6)
    assert torch.equal(fresh(x), out(x))
