"""The projection-head weighting measurement (arXiv:2403.11391)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_pre_head_weights_are_the_square_root_of_the_post_head_ones_and_probe_better():
    m = get_measure("projection_head_weighting")
    kw = dict(features=3, input_dim=6, hidden=4, out_dim=4, init=0.05, lr=0.05, n_probe=100, n_test=1000)
    out = m(0, steps=2000, **kw)
    assert out["post_error"] < 1e-6 and out["error"] < 0.02
    assert out["spread_post"] == pytest.approx(5.0, rel=1e-6)  # 1 / (1 + sigma_max^2) against 1
    assert out["probe_post_minus_pre"] < -0.05
    early = m(0, steps=20, **kw)
    assert early["post_error"] > 0.5  # not trained: far from the closed form


def test_bad_options():
    with pytest.raises(ConfigError, match="out_dim"):
        get_measure("projection_head_weighting")(0, features=6, out_dim=4)
