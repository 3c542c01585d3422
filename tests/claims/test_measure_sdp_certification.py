"""The SDP-vs-LP certification measurement (arXiv:2211.17244) on a tiny adversarially trained MLP."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_bounds_are_ordered_against_the_exact_margin():
    out = get_measure("sdp_vs_lp_certification")(0, hidden=[8, 8], eps=0.1, train_eps=0.05, steps=60, pgd_steps=2,
                                                n_points=1, max_rank_increase=0)
    assert out["points"] == 1
    assert out["lp_gap"] >= -1e-7 and out["sdp_gap"] >= -1e-6  # both are lower bounds of the exact margin
    assert out["error"] == pytest.approx(1 - out["closed"], abs=1e-12)
    if out["lp_gap"] > 1e-3:  # the share closed is defined: the SDP bound lies below the exact value
        assert out["closed"] <= 1 + 1e-5
    assert out["certified_exact"] >= out["certified_sdp"] and out["certified_exact"] >= out["certified_lp"]
    assert 0.0 <= out["clean_accuracy"] <= 1.0 and out["unstable"] >= 0


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="eps > 0"):
        get_measure("sdp_vs_lp_certification")(0, eps=0.0)
