"""The local-vs-global Lipschitz measurement (Shi et al. 2022, arXiv:2210.07394)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_ratios_are_bounded_and_a_tiny_ball_is_exact():
    m = get_measure("local_lipschitz_vs_global")
    out = m(0, in_features=3, width=8, n_points=3, n_samples=200)
    assert 0 < out["ratio"] <= 1 and 0 < out["tightness"] <= 1 and out["error"] == out["ratio"]
    # a ball too small for any unit to switch: the bound is the Jacobian norm at the centre, attained
    tiny = m(0, in_features=3, width=8, n_points=3, n_samples=200, eps=1e-9)
    assert tiny["unstable"] == 0.0 and tiny["tightness"] == pytest.approx(1.0, rel=1e-6)
    assert out == m(0, in_features=3, width=8, n_points=3, n_samples=200)
    with pytest.raises(ConfigError, match="eps"):
        m(0, eps=0.0)
