"""The SpikeGPT streaming measurement: tiny error, spikes in use, a constant state; a broken
recurrence (no decay) would be caught."""
import pytest

from layerlab.blocks.mixers.spikegpt import SpikingRWKV
from layerlab.claims.measures.spikegpt import spikegpt_streaming_equals_parallel as measure
from layerlab.errors import ConfigError


def test_values():
    out = measure(0, d_model=6, length=40)
    assert out["error"] < 1e-10 and out["spike_mismatch"] == 0.0
    assert 0.0 < out["spike_rate"] < 1.0
    assert out["state_size"] == 5 * 6


def test_broken_recurrence_is_caught(monkeypatch):
    orig = SpikingRWKV._step

    def no_token_shift(self, x_t, state):  # forget the previous token: the streams differ
        return orig(self, x_t, (state[0] * 0,) + tuple(state[1:]))
    monkeypatch.setattr(SpikingRWKV, "_step", no_token_shift)
    assert measure(0, d_model=6, length=40)["error"] > 1e-3


def test_bad_options():
    with pytest.raises(ConfigError, match="length"):
        measure(0, length=0)
