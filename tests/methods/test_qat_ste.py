"""QAT with the straight-through estimator: the forward is RTN (bit-identical to compress.quantize), the
latent weights get exactly the gradient of the loss w.r.t. the quantized weights, options are strict,
and a run trains through the Trainer (the method keeps no state of its own to resume)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.compress.quantize import dequantize, rtn, symmetric_rtn
from layerlab.errors import ConfigError
from layerlab.methods import build_method
from layerlab.methods.qat_ste import QatLinear, fake_quantize, make_qat, rtn_dequantized
from layerlab.spec import MethodSpec
from layerlab.train import MemoryRecorder, Trainer

from .test_width_scaled_wd import digits_spec


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
def test_fake_quantization_is_bit_identical_to_compress_rtn(dtype, bits):
    w = torch.randn(6, 9, generator=torch.Generator().manual_seed(bits), dtype=dtype) * 3
    w[2] = 0
    assert torch.equal(rtn_dequantized(w, bits), dequantize(*symmetric_rtn(w, bits)))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def test_ste_gradient_is_the_gradient_at_the_quantized_weights():
    net = _net()
    plain = copy.deepcopy(net)
    make_qat(net, 3)
    assert all(type(net[i]) is QatLinear for i in (0, 2, 4))
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    F.cross_entropy(net(x), y).backward()
    # reference: the plain network with its weights replaced by Q_3(W) as leaves; dL/dQ(W) there
    for i in (0, 2, 4):
        plain[i].weight = nn.Parameter(dequantize(*symmetric_rtn(plain[i].weight, 3)))
    F.cross_entropy(plain(x), y).backward()
    for i in (0, 2, 4):
        assert torch.equal(net[i].weight.grad, plain[i].weight.grad)  # identity through round, exactly
        assert torch.equal(net[i].bias.grad, plain[i].bias.grad)
    w = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 4, dtype=torch.float64)
    (fake_quantize(w, 2) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_qat_forward_equals_rtn_of_the_latent_weights():
    net = _net()
    x = torch.randn(4, 5, dtype=torch.float64)
    quantized = rtn(net, 4)  # a Linear model, quantized after training
    make_qat(net, 4)
    assert torch.equal(net(x), quantized(x))
    assert set(net.state_dict()) == set(_net().state_dict())  # same keys: checkpoints hold latent weights
    requantized = rtn(net, 4)  # QatLinear is a Linear: RTN of a QAT model gives the same forward
    assert torch.equal(requantized(x), net(x))


def test_options_and_exclude():
    assert build_method("qat_ste").bits == 4
    for bad in (1, 17, True, 4.0, "4"):
        with pytest.raises(ConfigError, match="bits"):
            build_method("qat_ste", bits=bad)
    with pytest.raises(ConfigError, match="exclude"):
        build_method("qat_ste", exclude="4")
    net = _net()
    assert make_qat(net, 4, ("4",)) == ["0", "2"] and type(net[4]) is nn.Linear
    with pytest.raises(ConfigError, match="not submodules"):
        make_qat(_net(), 4, ("head",))
    with pytest.raises(ConfigError, match="no nn.Linear"):
        make_qat(nn.Sequential(nn.ReLU()), 4)


def test_trains_through_the_trainer():
    spec = digits_spec((MethodSpec("qat_ste", {"bits": 3}),))
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, steps=20, eval_every=0))
    recorder = MemoryRecorder()
    trainer = Trainer(spec, recorder=recorder)
    result = trainer.fit()
    curve = [v for _, v in recorder.series("train", "loss")]
    assert len(curve) == 20 and curve[-1] < curve[0]
    assert result.results["test"]["accuracy"] > 0.3  # chance is 0.1: it learns with 3-bit weights
    linears = [m for m in trainer.model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is QatLinear and m.qat_bits == 3 for m in linears)
