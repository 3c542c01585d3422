"""The IFM-on-digits measurement (arXiv:2310.06756): the reported reduction is the merged network's."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_reduction_and_complexity_are_consistent():
    out = get_measure("feature_merging_digits")(0, width=32, depth=2, steps=150, betas=[0.0, 0.9, 1.3])
    w = 32
    c1, c2 = out["complexity_l1"], out["complexity_l2"]
    before = 64 * w + w + w * w + w + w * 10 + 10
    after = 64 * c1 + c1 + c1 * c2 + c2 + c2 * 10 + 10
    assert out["reduction"] == pytest.approx(1 - after / before, abs=1e-12)
    assert out["error"] == pytest.approx(1 - out["reduction"], abs=1e-12)
    assert out["acc_drop"] == pytest.approx(out["acc_original"] - out["acc_merged"], abs=1e-12)
    assert out["beta"] in (0.0, 0.9, 1.3) and 1 <= c1 <= w and 1 <= c2 <= w
    # at beta = 0 a trained net has no exactly equivalent units: nothing merges
    zero = get_measure("feature_merging_digits")(0, width=32, depth=2, steps=150, betas=[0.0])
    assert zero["reduction"] == 0.0 and zero["acc_drop"] == 0.0


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="betas"):
        get_measure("feature_merging_digits")(0, betas=[])
