"""The full-context measurement: 0 for HyperZ·Z·W, and a kernel cut to a short window is caught."""
import pytest

from layerlab.blocks.mixers.hyperzzw import HyperZZW
from layerlab.claims.measures.hyperzzw import hyperzzw_full_context as measure
from layerlab.errors import ConfigError


def test_values():
    out = measure(0, d_model=3, length=12)
    assert out["error"] == 0.0 and out["future_leak"] < 1e-12 and out["fft_error"] < 1e-12


def test_local_kernel_is_caught(monkeypatch):
    orig = HyperZZW.hyper_kernel

    def local(self, L, dtype=None):  # a kernel of 3 taps: outputs miss most of the past
        W = orig(self, L, dtype)
        W[3:] = 0
        return W
    monkeypatch.setattr(HyperZZW, "hyper_kernel", local)
    # with W~_j = W_j Z_j, output t reads Z_0..Z_2 and Z_{t-2}..Z_t: for t = 6..11 it misses
    # 1, 2, ..., 6 of its t + 1 inputs, 21 of the 78 pairs i <= t
    assert measure(0, d_model=3, length=12)["error"] == pytest.approx(21 / 78, abs=1e-12)


def test_bad_options():
    with pytest.raises(ConfigError, match="length"):
        measure(0, length=1)
