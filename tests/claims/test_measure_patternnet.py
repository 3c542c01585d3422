"""The PatternNet signal-quality measurement (arXiv:1705.05598) on a short run."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_a_short_run_reports_qualities_in_range_and_their_difference():
    out = get_measure("pattern_signal_quality")(0, width=12, depth=1, steps=40)
    for kind in ("filter", "linear", "two_component"):
        assert 0.0 <= out[f"rho_{kind}.0"] <= 1.0
    assert out["delta"] == pytest.approx(out["rho_two_component.0"] - out["rho_filter.0"])
    assert out["error"] == pytest.approx(1 - out["delta"])
    with pytest.raises(ConfigError, match="lr > 0"):
        get_measure("pattern_signal_quality")(0, lr=0.0)
