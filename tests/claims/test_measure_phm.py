"""phm_param_ratio against the closed-form count 2 n^3 + 2 D h / n + h + D over 2 D h + h + D."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ratio_matches_closed_form(n, seed):
    out = get_measure("phm_param_ratio")(seed, n=n, min_width=16, max_width=96)
    d, h = int(out["d_model"]), int(out["hidden"])
    assert d % n == 0 and 16 <= d <= 96 and h == 4 * d
    assert out["params_phm"] == 2 * n**3 + 2 * d * h // n + h + d
    assert out["params_mlp"] == 2 * d * h + h + d
    ratio = (2 * n**3 + 2 * d * h / n + h + d) / (2 * d * h + h + d)
    assert out["ratio"] == pytest.approx(ratio, rel=1e-12)
    assert out["error"] == pytest.approx(abs(n * ratio - 1), rel=1e-12)
    if n == 1:  # n = 1 is a dense layer plus its one rule parameter per layer
        assert out["params_phm"] - out["params_mlp"] == 2


def test_seeds_draw_widths_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    widths = {get_measure("phm_param_ratio")(s, n=4)["d_model"] for s in range(8)}
    assert len(widths) > 1
    assert torch.equal(state, torch.random.get_rng_state())


def test_ratio_approaches_one_over_n_with_width():
    small = get_measure("phm_param_ratio")(0, n=4, min_width=16, max_width=16)
    big = get_measure("phm_param_ratio")(0, n=4, min_width=1024, max_width=1024)
    assert big["error"] < small["error"] and big["error"] < 0.01


def test_bad_options():
    with pytest.raises(ConfigError, match="multiple of n"):
        get_measure("phm_param_ratio")(0, n=4, min_width=65, max_width=67)
    with pytest.raises(ConfigError, match="n must be"):
        get_measure("phm_param_ratio")(0, n=0)
