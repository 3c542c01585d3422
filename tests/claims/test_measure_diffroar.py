"""The DiffROAR measurement (Shah, Jain & Netrapalli 2021, arXiv:2102.12781)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_a_short_run_reports_consistent_differences():
    m = get_measure("diffroar_robust_vs_standard")
    out = m(0, width=16, steps=20, pgd_steps=1)
    for name in ("standard", "robust"):
        assert out[f"diffroar_{name}"] == pytest.approx(out[f"top_{name}"] - out[f"bottom_{name}"])
    assert out["delta"] == pytest.approx(out["diffroar_robust"] - out["diffroar_standard"])
    assert out["error"] == pytest.approx(1 - out["delta"])
    with pytest.raises(ConfigError, match="eps > 0"):
        m(0, eps=0.0)
