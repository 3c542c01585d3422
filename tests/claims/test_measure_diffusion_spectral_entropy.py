"""The DSE intrinsic-dimension measurement (Liao, Liu et al. 2023, arXiv:2312.04823)."""
from __future__ import annotations

import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_entropies_are_bounded_and_the_statistic_reads_them():
    m = get_measure("dse_intrinsic_dimension")
    out = m(0, dims=[1, 3], n=60, ambient=10, side=100.0, noise=0.0, sigma=10.0)
    assert 0 < out["dse_1"] <= math.log2(60) + 1e-9 and 0 < out["dse_3"] <= math.log2(60) + 1e-9
    assert out["increasing"] == float(out["dse_3"] > out["dse_1"]) and out["error"] == 1 - out["increasing"]
    # a bandwidth far below every distance: P = I for any dimension, DSE = log2 n, never increasing
    flat = m(0, dims=[1, 3], n=60, ambient=10, side=100.0, noise=0.0, sigma=1e-6)
    assert flat["dse_1"] == pytest.approx(math.log2(60), abs=1e-9) and flat["error"] == 1.0
    with pytest.raises(ConfigError, match="dims"):
        m(0, dims=[2])
