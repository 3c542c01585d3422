"""The Hessian mixed-precision measurement (2306.04879): every way meets the average-bits budget, read
from the returned modules; the statistics are the accuracy differences they say."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_measurement_meets_the_budget_and_reports_differences():
    m = get_measure("hessian_mixed_precision_digits")
    out = m(1, level=3, width=16, depth=2, steps=60, calibration=64, n_samples=12)
    assert out["uniform_bits"] == 3 and out["uniform_differs"] == 0
    for way in ("interlayer", "hawq", "block"):
        assert 2 <= out[f"{way}_bits"] <= 3  # the budget: at most 3 bits per weight on average
        assert 0 < out[f"{way}_bits_ratio"] < 8.5 / 32  # measured stored bits against float32
    assert out["error"] == out["uniform_accuracy"] - out["interlayer_accuracy"]
    assert out["error_vs_hawq"] == out["hawq_accuracy"] - out["interlayer_accuracy"]
    with pytest.raises(ConfigError, match="calibration"):
        m(0, calibration=0)
