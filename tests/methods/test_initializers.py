"""Initializers (Kumar 2017, arXiv:1704.08863): the variances, g(0) and g'(0), the redrawn weights."""
import math

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.methods import MethodStack, build_method
from layerlab.methods.initializers import model_activation, value_and_slope_at_zero, weight_variance
from layerlab.models import Classifier
from layerlab.spec import MethodSpec, ModelSpec

from .test_methods import run_context
from .test_width_scaled_wd import digits_spec, resumes_identically


def test_activation_value_and_slope_at_zero():
    assert value_and_slope_at_zero("tanh") == (0.0, 1.0)
    assert value_and_slope_at_zero("sigmoid") == (0.5, 0.25)
    g0, slope = value_and_slope_at_zero("gelu")  # x Phi(x): 0 and Phi(0) = 1/2
    assert g0 == 0.0 and slope == pytest.approx(0.5, abs=1e-12)
    g0, slope = value_and_slope_at_zero("silu")  # x sigmoid(x): 0 and 1/2
    assert g0 == 0.0 and slope == pytest.approx(0.5, abs=1e-12)


def test_kumar_variances_closed_form():
    n = 256
    assert weight_variance("kumar", n, 100, "tanh") == pytest.approx(1 / n, rel=1e-15)
    # sigmoid: 1 / (N (1/4)^2 (1 + 1/4)) = 12.8 / N, the paper's sigma ~ 3.6 / sqrt(N)
    assert weight_variance("kumar", n, 100, "sigmoid") == pytest.approx(12.8 / n, rel=1e-14)
    assert math.sqrt(weight_variance("kumar", n, 1, "sigmoid") * n) == pytest.approx(3.58, abs=0.01)
    assert weight_variance("kumar", n, 100, "relu") == 2 / n
    assert weight_variance("kumar", n, 100, "gelu") == pytest.approx(4 / n, rel=1e-12)
    assert weight_variance("xavier", n, 100) == 2 / (n + 100)
    assert weight_variance("he", n, 100) == 2 / n and weight_variance("lecun", n, 100) == 1 / n


def _model(activation="gelu", d=128):
    torch.manual_seed(0)
    spec = ModelSpec(backbone="classifier", channel="mlp", d_model=d, channel_options={"activation": activation})
    return Classifier(spec, in_features=64, n_classes=10)


@pytest.mark.parametrize("scheme", ["kumar", "xavier", "he", "lecun"])
def test_setup_redraws_every_linear_weight_with_the_rules_variance(scheme):
    model = _model("silu", d=256)
    assert model_activation(model) == "silu"
    stack = MethodStack([build_method("init", scheme=scheme)])
    stack.setup(model, run_context(dtype=torch.float32))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6  # proj, 2 x (fc1, fc2), head
    for m in linears:
        expected = weight_variance(scheme, m.in_features, m.out_features, "silu")
        n = m.weight.numel()
        # sample variance of n normals: relative standard error sqrt(2/n); allow 5 of them
        assert abs(m.weight.var().item() / expected - 1) < 5 * math.sqrt(2 / n), (m, scheme)
        assert abs(m.weight.mean().item()) < 5 * math.sqrt(expected / n)
        assert m.bias is None or torch.all(m.bias == 0)


def test_draws_come_from_the_methods_generator():
    a, b = _model(), _model()
    MethodStack([build_method("init")]).setup(a, run_context(seed=1))
    MethodStack([build_method("init")]).setup(b, run_context(seed=1))
    assert torch.equal(a.head.weight, b.head.weight)
    c = _model()
    MethodStack([build_method("init")]).setup(c, run_context(seed=2))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_strict_options():
    with pytest.raises(ConfigError, match="scheme must be one of"):
        build_method("init", scheme="orthogonal")
    with pytest.raises(ConfigError, match="unknown activation 'swish'"):
        build_method("init", activation="swish")
    with pytest.raises(ConfigError, match="give it as the option `activation`"):
        MethodStack([build_method("init")]).setup(nn.Sequential(nn.Linear(2, 2)), run_context())
    with pytest.raises(ConfigError, match="no nn.Linear"):
        MethodStack([build_method("init", activation="tanh")]).setup(nn.Sequential(nn.Tanh()), run_context())


def test_trains_and_resumes(tmp_path):
    curve = resumes_identically(digits_spec((MethodSpec("init", {"scheme": "kumar"}),)), tmp_path)
    assert curve[-1] < curve[0]
