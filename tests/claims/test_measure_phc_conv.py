"""phc_conv_param_ratio against the closed-form count n^3 + s d k^2 / n + s over s d k^2 + s, and its
check that the factored layer equals conv2d with the Kronecker-sum filter bank."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("phc_conv_param_ratio")


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ratio_matches_closed_form_and_layer_is_exact(n, seed):
    out = MEASURE(seed, n=n, min_channels=8, max_channels=64)
    s, d, k = int(out["out_channels"]), int(out["in_channels"]), int(out["kernel_size"])
    assert s % n == 0 and d % n == 0 and 8 <= min(s, d) and max(s, d) <= 64 and k in (1, 3, 5)
    assert out["params_phc"] == n**3 + s * d * k * k // n + s and out["params_dense"] == s * d * k * k + s
    ratio = (n**3 + s * d * k * k / n + s) / (s * d * k * k + s)
    assert out["ratio"] == pytest.approx(ratio, rel=1e-12)
    assert out["error"] == pytest.approx(abs(n * ratio - 1), rel=1e-12)
    assert out["conv_error"] < 1e-12


def test_seeds_draw_layers_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    shapes = {(o["in_channels"], o["out_channels"], o["kernel_size"]) for o in (MEASURE(s) for s in range(6))}
    assert len(shapes) > 1
    assert torch.equal(state, torch.random.get_rng_state())


def test_ratio_tends_to_one_over_n_with_width():
    small = MEASURE(0, n=4, min_channels=8, max_channels=8, kernels=(1,))
    big = MEASURE(0, n=4, min_channels=512, max_channels=512, kernels=(3,))
    assert big["error"] < small["error"] and big["error"] < 0.01


def test_bad_options():
    with pytest.raises(ConfigError, match="multiple of n"):
        MEASURE(0, n=4, min_channels=5, max_channels=7)
    with pytest.raises(ConfigError, match="n must be"):
        MEASURE(0, n=0)
    with pytest.raises(ConfigError, match="kernels"):
        MEASURE(0, kernels=(0,))
