"""The distributional-simplicity measurement (Refinetti, Ingrosso & Goldt 2023, arXiv:2211.11567)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_a_short_run_reads_its_own_records():
    m = get_measure("distributional_simplicity")
    out = m(0, width=16, steps=40, n_records=5)
    assert out["drop"] == pytest.approx(out["early_ratio"] - out["final_ratio"])
    assert out["error"] == pytest.approx(1 - out["drop"]) and 0 <= out["clone_final"] <= out["clone_peak"] <= 1
    assert 1 <= out["early_step"] <= 40
    with pytest.raises(ConfigError, match="lr > 0"):
        m(0, lr=0.0)
