"""tversky_xor: the Tversky layer's XOR fit, the linear bound, determinism and RNG hygiene."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tversky_fits_xor_linear_does_not(seed):
    out = get_measure("tversky_xor")(seed)
    assert out["error"] == 0.0 and out["accuracy_tversky"] == 1.0 and out["loss_tversky"] < 0.5
    assert out["accuracy_linear"] <= 0.75  # no line separates XOR: at most 3 of 4 points
    assert out["loss_linear"] > 0.5  # and its cross-entropy cannot approach 0


def test_untrained_layer_does_not_fit_and_error_is_one_minus_accuracy():
    out = get_measure("tversky_xor")(0, steps=1, lr=1e-9)  # one negligible step: the random init
    assert out["error"] == pytest.approx(1.0 - out["accuracy_tversky"])
    assert out["accuracy_tversky"] < 1.0


def test_deterministic_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = get_measure("tversky_xor")(3, steps=20)
    b = get_measure("tversky_xor")(3, steps=20)
    assert a == b
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_options():
    with pytest.raises(ConfigError, match="difference"):
        get_measure("tversky_xor")(0, difference="nope")
