"""The eigenlearning measurements (Simon et al. 2023, arXiv:2311.14646): KRR on power-law Gaussian data
against the eigenframework; the gain of the best positive ridge over zero ridge."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.eigenlearning import krr_test_mse, powerlaw_task
from layerlab.errors import ConfigError


def test_exact_test_mse_equals_a_large_test_sample() -> None:
    """The population test MSE of the linear predictor against 20,000 fresh noisy test points."""
    lam, v = powerlaw_task(60, 1.5, 1.5)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    (te,), (tr,) = krr_test_mse(lam, v, 20, [0.05], 0.1, gen)
    gen.set_state(state)  # replay the draw to get the same training set
    x = torch.randn(20, 60, generator=gen, dtype=torch.float64) * lam.sqrt()
    b = v / lam.sqrt()
    y = x @ b + 0.1 ** 0.5 * torch.randn(20, generator=gen, dtype=torch.float64)
    beta_hat = x.T @ torch.linalg.solve(x @ x.T + 0.05 * torch.eye(20, dtype=torch.float64), y)
    xt = torch.randn(20000, 60, generator=gen, dtype=torch.float64) * lam.sqrt()
    yt = xt @ b + 0.1 ** 0.5 * torch.randn(20000, generator=gen, dtype=torch.float64)
    assert te == pytest.approx(float((xt @ beta_hat - yt).square().mean()), rel=0.03)
    assert tr == pytest.approx(float((x @ beta_hat - y).square().mean()), rel=1e-10)


def test_measures_report_the_prediction_and_gain() -> None:
    out = get_measure("eigenlearning_krr_risk")(0, n=64, d=400, draws=3)
    assert 0 <= out["error"] < 0.1
    assert out["error"] == pytest.approx(max(abs(out[f"test@{r}"] - out[f"pred_test@{r}"]) / out[f"pred_test@{r}"]
                                             for r in ("0", "0.3", "3")))
    opt = get_measure("eigenlearning_optimal_ridge")(0, n=64, d=400, draws=3)
    best = min(opt[f"test@{r}"] for r in ("0.1", "0.3", "1", "3"))
    assert opt["gain"] == pytest.approx((opt["test@0"] - best) / opt["test@0"])



def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="d > n"):
        get_measure("eigenlearning_krr_risk")(0, n=100, d=50)
    with pytest.raises(ConfigError, match="ridges must be > 0"):
        get_measure("eigenlearning_optimal_ridge")(0, ridges=[0.0, 1.0])
