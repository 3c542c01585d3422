"""The scattering translation-invariance measurement (arXiv:1512.06293)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_pooling_makes_deeper_layers_more_invariant_and_no_pooling_does_not():
    out = get_measure("scattering_translation")(0, length=256, depth=3, shift=4, scales=3, signals=3)
    assert out["error"] < 0.8 and out["rel_2"] < out["rel_1"] < out["rel_0"]
    assert out["bound_ratio"] <= 1.0
    assert out["nopool_error"] > 0.9  # without pooling the sensitivity does not shrink layer by layer


def test_shift_must_be_a_multiple_of_the_pooling():
    with pytest.raises(ConfigError, match="multiple"):
        get_measure("scattering_translation")(0, shift=3)
