"""The WDiscOOD measurement (arXiv:2303.07543) on a short run."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_a_short_run_reports_consistent_aurocs():
    out = get_measure("wdiscood_digits")(0, width=16, depth=1, steps=40)
    for name in ("wdiscood", "mahalanobis", "msp"):
        assert 0.5 < out[f"auroc_{name}"] <= 1.0 and 0.0 <= out[f"fpr95_{name}"] <= 1.0
    assert out["delta"] == pytest.approx(out["auroc_wdiscood"] - max(out["auroc_mahalanobis"], out["auroc_msp"]))
    assert out["error"] == pytest.approx(1 - out["delta"])
    with pytest.raises(ConfigError, match="beta"):
        get_measure("wdiscood_digits")(0, beta=-1.0)
