"""The attention-scaling measurement: the dot product's moments, and a softmax Jacobian checked
against autograd."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.attention_scale import softmax_jacobian_norm
from layerlab.errors import ConfigError


def test_dot_product_has_variance_dk_and_unscaled_logits_saturate_the_softmax():
    out = get_measure("attention_dot_product_scale")(0, dims=(4, 256), n=20_000, keys=16, queries=256)
    # sampling error of var(q.k)/d_k is about sqrt((2 + 6/d_k) / n) <= 0.0224 here
    assert out["error"] < 0.08
    assert abs(out["var_over_dk_256"] - 1) < 0.05
    assert out["jacobian_ratio_256"] < 0.5 * out["jacobian_ratio_4"]  # saturation grows with d_k
    assert out["jacobian_ratio"] == out["jacobian_ratio_256"]


def test_error_catches_a_dot_product_of_the_wrong_variance(monkeypatch):
    import layerlab.claims.measures.attention_scale as m

    real = torch.randn
    monkeypatch.setattr(m.torch, "randn", lambda *a, **k: 1.2 * real(*a, **k))  # variance 1.44 per component
    out = get_measure("attention_dot_product_scale")(0, dims=(64,), n=20_000, keys=4, queries=8)
    assert abs(out["error"] - (1.44 ** 2 - 1)) < 0.1  # var(q.k)/d_k = 1.44^2


def test_softmax_jacobian_norm_equals_autograd():
    logits = torch.randn(3, 5, dtype=torch.float64)
    for row, norm in zip(logits, softmax_jacobian_norm(logits)):
        jac = torch.autograd.functional.jacobian(lambda z: z.softmax(-1), row)
        assert math.isclose(norm.item(), jac.norm().item(), rel_tol=1e-12)


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="keys >= 2"):
        get_measure("attention_dot_product_scale")(0, keys=1)
