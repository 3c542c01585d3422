"""The canonical-holdout measurement (Abbe et al. 2022, arXiv:2205.13647)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_mlp_interpolates_the_seen_half_and_is_scored_against_2_inf():
    out = get_measure("canonical_holdout_influence")(0, d=5, terms=[[0, 1], [2, 3]], coefs=[1.0, 1.0], width=64,
                                                     steps=400, lr=3e-3)
    assert out["predicted"] == pytest.approx(2.0)
    assert out["train_loss"] < 1e-3
    assert out["error"] == pytest.approx(abs(out["test_mse"] / 2.0 - 1), rel=1e-12)
    assert 0 <= out["unseen_match_mdi"] < 1.0  # nearer the min-degree interpolator than f on the unseen half


def test_target_without_the_frozen_feature_is_an_error():
    with pytest.raises(ConfigError, match="influence 0"):
        get_measure("canonical_holdout_influence")(0, d=4, terms=[[1, 2]], coefs=[1.0], frozen=0, steps=1)
