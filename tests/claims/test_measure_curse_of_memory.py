"""The curse-of-memory measurement (arXiv:2305.19190)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_polynomial_memory_fits_break_under_perturbation_and_exponential_ones_do_not():
    out = get_measure("curse_of_memory")(0, length=300, widths=[2, 4], steps=300, lr=0.02, beta=0.02, directions=2)
    assert out["violations"] == 6 - sum(out[f"prediction_{i}_holds"] for i in range(1, 7))
    # the perturbation crosses the polynomial fits' stability boundary and not the exponential ones'
    assert out["pol_direct_m4_gap"] < 0.02 < out["exp_direct_m4_gap"]
    assert out["pol_direct_m4_perturbed"] > 10 * out["pol_direct_m4_error"]
    assert out["pol_exp_m4_perturbed"] < 2 * out["pol_exp_m4_error"] + 0.01  # reparameterized: barely moves


def test_one_width_is_a_config_error():
    with pytest.raises(ConfigError, match="two widths"):
        get_measure("curse_of_memory")(0, widths=[4])
