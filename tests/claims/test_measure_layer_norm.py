"""The LayerNorm invariance measurement: invariances hold, the non-invariance control does not,
and an RMSNorm (no re-centering) fails the weight re-centering invariance."""
import pytest
import torch

from layerlab.blocks import norms
from layerlab.claims.measures import get_measure
from layerlab.claims.measures import layer_norm as measure_module
from layerlab.errors import ConfigError


def test_invariances_hold_and_per_unit_rescaling_is_not_one():
    out = get_measure("layernorm_invariances")(0, d_in=4, hidden=8, batch=16)
    assert out["error"] < 1e-12
    assert out["per_unit_change"] > 1e-2


def test_rmsnorm_is_caught_by_the_recentering_invariance(monkeypatch):
    class NoCentering(norms.RMSNorm):
        def __init__(self, d, *, eps=0.0, dtype=None):
            super().__init__(d, eps=eps, dtype=dtype)
            self.bias = torch.nn.Parameter(torch.zeros(d, dtype=dtype))

        def forward(self, x):
            return super().forward(x) + self.bias

    monkeypatch.setattr(measure_module, "LayerNorm", NoCentering)
    out = get_measure("layernorm_invariances")(0, d_in=4, hidden=8, batch=16)
    assert out["weight_rescale"] < 1e-12  # RMSNorm keeps re-scaling invariance
    assert out["weight_recenter"] > 1e-3  # but not re-centering


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="hidden"):
        get_measure("layernorm_invariances")(0, hidden=1)
