"""The information-plane compression measurements (1703.00810, 1902.09037)."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.information_plane import twelve_bit_task
from layerlab.errors import ConfigError


def test_twelve_bit_task_is_every_pattern_once_with_balanced_labels():
    x, y = twelve_bit_task(0)
    assert x.shape == (4096, 12) and torch.unique(x, dim=0).shape[0] == 4096
    assert set(x.unique().tolist()) == {-1.0, 1.0} and int(y.sum()) == 2048


def test_a_short_run_reports_a_ratio_of_its_own_trajectory():
    m = get_measure("adaptive_information_compression")
    out = m(0, steps=20, n_records=4)
    assert 0 < out["ratio"] <= 1 and out["error"] == out["ratio"]
    assert out["ixt_peak"] <= math.log2(4096) + 1e-9 and 0 <= out["ity_final"] <= 1 + 1e-9
    assert out["compression"] == pytest.approx(out["ixt_peak"] - out["ixt_final"])
    with pytest.raises(ConfigError, match="activation"):
        get_measure("information_plane_compression")(0, activation="gelu")
