"""The Git Re-Basin measurement (arXiv:2209.04836): a tiny run gives consistent quantities."""
import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_a_tiny_run_gives_consistent_barriers_and_checks_options():
    m = get_measure("git_rebasin_barrier")
    out = m(0, d_models=[4, 8], n_layers=1, steps=5, batch_size=8, alphas=5)
    for w in (4, 8):
        assert out[f"before_{w}"] >= 0 and out[f"after_{w}"] >= 0  # the grid holds both ends
        # the identity is a candidate permutation, so matching never moves B farther from A
        assert 0 < out[f"distance_ratio_{w}"] <= 1 + 1e-12
        assert out[f"sweeps_{w}"] >= 1
        assert 0 <= out[f"accuracy_a_{w}"] <= 1
    assert out["error"] == pytest.approx(out["after_8"] - out["before_8"])
    assert out["width_error"] == pytest.approx(out["after_8"] - out["after_4"])
    with pytest.raises(ConfigError, match="increasing widths"):
        m(0, d_models=[8, 4])
    with pytest.raises(ConfigError, match="lr"):
        m(0, d_models=[4], lr=0.0)
