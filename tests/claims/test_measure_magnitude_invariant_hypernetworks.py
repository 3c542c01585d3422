"""mip_hypernetwork_digits: fields, excess = loss_mip - loss_standard, deterministic, strict options."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_fields_and_definition():
    state = torch.random.get_rng_state()
    m = get_measure("mip_hypernetwork_digits")
    out = m(0, width=8, steps=30)
    assert out["excess"] == pytest.approx(out["loss_mip"] - out["loss_standard"], abs=1e-12)
    assert 0 < out["loss_mip"] < 5 and 0 < out["loss_standard"] < 5  # chance-level CE is ln 10 = 2.3
    assert out == m(0, width=8, steps=30)
    assert torch.equal(state, torch.random.get_rng_state())
    zero = m(0, width=8, steps=30, reg=0.0)
    assert zero["loss_standard"] != out["loss_standard"]  # the gamma-dependent term enters the loss


def test_bad_options():
    with pytest.raises(ConfigError, match="reg"):
        get_measure("mip_hypernetwork_digits")(0, reg=-1.0)
