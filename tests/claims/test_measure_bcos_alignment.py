"""The B-cos bound measurement: exact on a 2-d case, and a layer without the cosine factor is caught."""
import math

import pytest
import torch

from layerlab.blocks.channels.bcos import BcosLinear
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_bcos_response_at_45_degrees_is_cos_to_the_B():
    layer = BcosLinear(2, 1, B=2.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0]], dtype=torch.float64))
        y = layer(torch.tensor([[2.0, 2.0]], dtype=torch.float64))
    # ||x|| = 2 sqrt(2), cos = 1/sqrt(2): |f| = ||x|| cos^2 = sqrt(2)
    assert abs(y.item() - math.sqrt(2)) < 1e-9


def test_measurement_holds_for_bcos_and_misaligned_inputs_lose():
    out = get_measure("bcos_alignment_bound")(0, d_in=8, d_out=4, n_inputs=64)
    assert out["error"] < 1e-10
    assert out["mean_ratio"] < 0.5  # random inputs are far from aligned


def test_measurement_catches_a_plain_linear_response(monkeypatch):
    def linear(self, x):  # w^T x without normalization: unbounded by ||x||
        return x @ self.weight.T

    monkeypatch.setattr(BcosLinear, "forward", linear)
    assert get_measure("bcos_alignment_bound")(0, d_in=8, d_out=4, n_inputs=64)["error"] > 1e-3


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="B >= 1"):
        get_measure("bcos_alignment_bound")(0, B=0.5)
