"""sdm_selective_digits: fields and definitions, deterministic, strict options."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_fields_and_definition():
    state = torch.random.get_rng_state()
    m = get_measure("sdm_selective_digits")
    out = m(0, width=16, steps=200, alpha=0.5)
    assert out["deficit"] == pytest.approx(out["precision_softmax"] - out["precision_sdm"], abs=1e-12)
    for key, v in out.items():
        assert key == "deficit" or 0.0 <= v <= 1.0 or math.isnan(v), key
    assert out["admit_known_softmax"] > 0.5  # a trained net is confident on most known digits at alpha = 0.5
    assert out == m(0, width=16, steps=200, alpha=0.5)
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_options():
    with pytest.raises(ConfigError, match="alpha"):
        get_measure("sdm_selective_digits")(0, alpha=1.0)
