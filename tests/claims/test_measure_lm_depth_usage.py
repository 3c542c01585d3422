"""The depth-usage measurement (Csordás, Manning & Potts 2025, arXiv:2505.13898)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_options_are_checked():
    m = get_measure("lm_depth_usage")
    with pytest.raises(ConfigError, match="even n_layers"):
        m(0, n_layers=3)
    with pytest.raises(ConfigError, match="lr > 0"):
        m(0, lr=0.0)
