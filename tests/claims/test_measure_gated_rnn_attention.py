"""The gated-RNN-as-attention measurement (arXiv:2309.01775)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_constructed_rnn_equals_lsa_and_the_ablation_does_not():
    out = get_measure("gated_rnn_lsa")(0, dim=3, heads=2, length=6, batch=2, decay=0.7)
    assert out["error"] < 1e-10 and out["decay_error"] < 1e-10
    assert out["query_memory_error"] > 0.05
    assert out["neurons"] == 2 * 3 * (3 + 1)


def test_bad_decay_is_a_config_error():
    with pytest.raises(ConfigError, match="decay in"):
        get_measure("gated_rnn_lsa")(0, decay=2.0)
