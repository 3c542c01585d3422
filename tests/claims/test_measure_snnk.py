"""snnk_mse_scaling: slope -1 of log MSE against log m, and the MSE against the closed-form variance."""
import pytest
import torch

from layerlab.blocks.channels.snnk import phi, psi
from layerlab.claims.measures import get_measure
from layerlab.claims.measures.snnk import exp_variance, loglog_slope
from layerlab.errors import ConfigError


def test_exp_variance_closed_form_against_monte_carlo():
    """sigma^2 = exp(2 w.x)(exp(|x + w|^2) - 1) is the variance of one term phi_j(x) psi_j(w) * m."""
    g = torch.Generator().manual_seed(0)
    x = 0.4 * torch.randn(1, 5, generator=g, dtype=torch.float64)
    w = 0.4 * torch.randn(1, 5, generator=g, dtype=torch.float64)
    omega = torch.randn(400_000, 5, generator=g, dtype=torch.float64)
    terms = phi(x, omega, "exp") * psi(w, None, omega, "exp") * omega.shape[0]  # one term per feature
    assert terms.mean().item() == pytest.approx(torch.exp(x @ w.T).item(), rel=5e-3)
    assert terms.var().item() == pytest.approx(exp_variance(x, w).item(), rel=3e-2)


@pytest.mark.parametrize("activation", ["exp", "sin"])
def test_slope_is_minus_one(activation):
    out = get_measure("snnk_mse_scaling")(0, activation=activation, ms=[16, 64, 256, 1024], reps=8)
    assert abs(out["slope"] + 1) < 0.15 and out["error"] == pytest.approx(abs(out["slope"] + 1))
    assert out["mse_last"] < out["mse_first"] / 20
    if activation == "exp":
        assert out["variance_ratio"] == pytest.approx(1.0, rel=0.25)


def test_loglog_slope_on_exact_power_laws():
    ms = [16, 64, 256, 1024]
    assert loglog_slope(ms, [3.0 / m for m in ms]) == pytest.approx(-1.0, abs=1e-12)
    assert loglog_slope(ms, [3.0 / m**2 for m in ms]) == pytest.approx(-2.0, abs=1e-12)  # error 1 would fail the card
    assert loglog_slope(ms, [0.5] * 4) == pytest.approx(0.0, abs=1e-12)


def test_global_rng_untouched_and_bad_options():
    state = torch.random.get_rng_state()
    get_measure("snnk_mse_scaling")(2, ms=[8, 32], reps=1)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="activation"):
        get_measure("snnk_mse_scaling")(0, activation="arccos")
    with pytest.raises(ConfigError, match="ms"):
        get_measure("snnk_mse_scaling")(0, ms=[16])
