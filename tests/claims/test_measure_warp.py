"""The WARP measurement: tiny error when the modes agree, large when the recurrence is broken."""
import pytest

from layerlab.blocks.mixers.warp import WARP
from layerlab.claims.measures.warp import warp_conv_equals_recurrence as measure
from layerlab.errors import ConfigError


def test_values():
    out = measure(0, d_model=3, hidden=2, length=20)
    assert out["error"] < 1e-10
    assert out["d_theta"] == 2 + 2 + 6 + 3 and out["state_size"] == out["d_theta"] + 3 + 1


def test_broken_recurrence_is_caught(monkeypatch):
    orig = WARP._step

    def no_difference(self, x_t, state):  # drive by x_t instead of x_t - x_{t-1}
        return orig(self, x_t, (state[0], state[1] * 0, state[2]))
    monkeypatch.setattr(WARP, "_step", no_difference)
    assert measure(0, d_model=3, hidden=2, length=20)["error"] > 1e-3


def test_bad_options():
    with pytest.raises(ConfigError, match="length"):
        measure(0, length=0)
