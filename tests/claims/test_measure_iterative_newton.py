"""The Newton-vs-GD measurement (arXiv:2310.17086)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_closed_forms_hold_and_newton_needs_far_fewer_steps_on_ill_conditioned_prompts():
    out = get_measure("newton_vs_gd")(0, dim=3, context=8, spectrum=[1.0, 0.1, 0.01], prompts=4, newton_steps=18,
                                      gd_steps=300, gd_stride=100)
    assert out["error"] < 1e-8
    assert out["bound_violations"] == 0
    assert out["newton_steps_to_eps"] < 25 and out["gd_steps_to_eps"] > 4 * out["newton_steps_to_eps"]
    assert out["spectral_alpha_error"] > 0.01  # alpha = 2/||SS^T||_2 leaves the top direction unsolved


def test_too_short_a_context_is_a_config_error():
    with pytest.raises(ConfigError, match="context >= dim"):
        get_measure("newton_vs_gd")(0, dim=5, context=3)
