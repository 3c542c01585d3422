"""mp_gelu_moments: the closed-form moments agree with Monte Carlo to its noise; the gate variance
(a different quantity) is caught; the error shrinks like 1/sqrt(samples); seeding and options."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("mp_gelu_moments")


def test_exact_moments_agree_within_monte_carlo_noise():
    out = MEASURE(0, points=6, samples=200_000)
    assert out["error"] == max(out["mean_error"], out["var_error"])
    assert out["mean_error"] < 5 * out["mc_noise"]  # in output standard deviations
    assert out["var_error"] < 0.03  # relative; MC noise ~ sqrt((kurtosis - 1) / n) < 0.01


def test_gate_variance_is_detected_as_wrong():
    exact = MEASURE(1, points=6, samples=50_000)
    gate = MEASURE(1, points=6, samples=50_000, variance="gate")
    assert gate["mean_error"] == pytest.approx(exact["mean_error"])  # same mean, same draws
    assert gate["var_error"] > 10 * exact["var_error"] and gate["var_error"] > 0.1


def test_error_shrinks_with_samples_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    small = MEASURE(2, points=4, samples=2_000)
    big = MEASURE(2, points=4, samples=200_000)
    assert big["error"] < small["error"]
    assert MEASURE(2, points=4, samples=2_000) == small  # seeded by its own generator
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_options():
    with pytest.raises(ConfigError, match="samples"):
        MEASURE(0, samples=10)
    with pytest.raises(ConfigError, match="sigma_min"):
        MEASURE(0, sigma_min=0.0)
    with pytest.raises(ConfigError, match="variance"):
        MEASURE(0, variance="taylor")
