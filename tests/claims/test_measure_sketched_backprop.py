"""The sketched-backprop measurement (arXiv:2201.13195): its memory figures are the bytes of the
sketches, its drops the differences of the reported accuracies."""
from __future__ import annotations

import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_saved_bytes_differ_by_the_sketched_rows_only():
    """Only the Linear inputs change: each of the (depth + 1) Linear layers keeps ceil(rho B) rows
    instead of B, of widths 64, w, ..., w (float32)."""
    w, depth, batch = 16, 2, 20
    out = get_measure("sketched_backprop_digits")(0, width=w, depth=depth, steps=20, batch=batch, lrs=[1e-3],
                                                  ratios=[0.5, 0.1], card_ratio=0.5)
    widths = 64 + depth * w
    for r in (0.5, 0.1):
        k = math.ceil(r * batch)
        assert out["saved_bytes_exact"] - out[f"saved_bytes_r{r:g}"] == 4 * (batch - k) * widths
        assert out[f"saved_ratio_r{r:g}"] == pytest.approx(out[f"saved_bytes_r{r:g}"] / out["saved_bytes_exact"])
        assert out[f"acc_drop_r{r:g}"] == pytest.approx(out["acc_exact"] - out[f"acc_r{r:g}"], abs=1e-12)
    assert out["acc_drop"] == out["acc_drop_r0.5"]
    assert out["saved_ratio_r0.1"] < out["saved_ratio_r0.5"] < 1


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="card_ratio"):
        get_measure("sketched_backprop_digits")(0, ratios=[0.5], card_ratio=0.25)
    with pytest.raises(ConfigError, match="sketch"):
        get_measure("sketched_backprop_digits")(0, sketch="dct")
