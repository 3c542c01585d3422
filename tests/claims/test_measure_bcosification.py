"""bcosification_digits: deficit = acc_scratch - acc_bcosified, deterministic per seed, RNG untouched, strict options."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_fields_and_deficit_definition():
    state = torch.random.get_rng_state()
    out = get_measure("bcosification_digits")(0, width=16, pre_steps=200, ft_steps=20, ramp_steps=10)
    assert set(out) == {"deficit", "acc_original", "acc_bcosified", "acc_scratch"}
    assert out["deficit"] == pytest.approx(out["acc_scratch"] - out["acc_bcosified"], abs=1e-12)
    assert out["acc_original"] > 0.5  # the pretrained MLP learned something (chance is 0.1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert out == get_measure("bcosification_digits")(0, width=16, pre_steps=200, ft_steps=20, ramp_steps=10)


def test_bad_options():
    with pytest.raises(ConfigError, match="scratch_steps"):
        get_measure("bcosification_digits")(0, scratch_steps=0)
