"""The ESN memory-capacity measurement (Ballarin, Grigoryeva & Ortega 2025, arXiv:2502.04832)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_small_inputs_recover_the_linear_capacity_and_large_ones_lose_it():
    m = get_measure("esn_capacity_input_scale")
    out = m(0, n=6, length=4000, max_delay=40, scales=[1e-4, 30.0])
    assert out["mc_linear"] == pytest.approx(6.0, abs=1e-2)  # rank of the controllability matrix (40 delays)
    assert out["mc_0.0001"] == pytest.approx(out["mc_linear"], abs=0.15)  # tanh is linear near 0
    assert out["mc_30"] < out["mc_0.0001"] and out["error"] == pytest.approx(1 - out["spread"])
    with pytest.raises(ConfigError, match="rho"):
        m(0, rho=1.5)
