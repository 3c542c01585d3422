"""revcol_reversible_memory: zero growth and exact gradients for RevCol; a broken inverse is caught."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.revcol import saved_bytes
from layerlab.errors import ConfigError
from layerlab.models.revcol import Column


def test_exact_for_revcol_and_saved_bytes_closed_form():
    out = get_measure("revcol_reversible_memory")(0, columns_lo=2, columns_hi=4)
    assert out["error"] <= 1e-10 and out["growth"] == 0.0 and 0 < out["ratio"] < 0.5
    lin = torch.nn.Linear(3, 2, bias=False).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    assert saved_bytes(lin, x) == 5 * 3 * 8  # a bias-free linear layer saves its input only


def test_detects_a_wrong_inverse(monkeypatch):
    orig = Column.inverse

    def off(self, x0, cur):
        return [p * 1.001 for p in orig(self, x0, cur)]

    monkeypatch.setattr(Column, "inverse", off)
    assert get_measure("revcol_reversible_memory")(0, columns_lo=2, columns_hi=4)["grad_error"] > 1e-6


def test_bad_options():
    with pytest.raises(ConfigError, match="columns_lo"):
        get_measure("revcol_reversible_memory")(0, columns_lo=4, columns_hi=2)
