"""The inductive-bias-vs-dimension measurement (arXiv:2406.15941): its slope is the least-squares slope of its bits."""
from __future__ import annotations

import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_slope_is_the_fit_of_the_reported_bits():
    out = get_measure("inductive_bias_dimension")(0, dims=[1, 4], n_train=30, n_test=10, n_samples=300)
    assert out["bits_d1"] >= 0 and out["bits_d4"] >= 0
    assert out["slope"] == pytest.approx((out["bits_d4"] - out["bits_d1"]) / math.log2(4), rel=1e-12, abs=1e-12)
    assert out["error"] == -out["slope"]
    # with 30 training points the 1-d ridge is learned (errors near 0), in 4-d it is not
    assert out["mean_error_d1"] < 0.1 < out["mean_error_d4"]


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="distinct dims"):
        get_measure("inductive_bias_dimension")(0, dims=[4])
