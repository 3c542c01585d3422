"""The VCI measurements (Xu & Liu 2023, arXiv:2306.03440) on a short run."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_short_runs_report_consistent_values_and_the_invariance():
    out = get_measure("vci_along_training")(0, width=16, depth=1, steps=40, points=3)
    assert out["ratio"] == pytest.approx(out["vci_final"] / out["vci_init"])
    assert 0 < out["vci_final"] < 1 and 0 <= out["monotone"] <= 1
    inv = get_measure("vci_invariance")(0, width=16, depth=1, steps=40, cond=50.0)
    assert inv["vci_relative_change"] < 1e-10 < 0.01 < inv["nc1_relative_change"]
    assert inv["error"] == pytest.approx(inv["vci_relative_change"] / inv["nc1_relative_change"])
    with pytest.raises(ConfigError, match="points"):
        get_measure("vci_along_training")(0, points=1)
