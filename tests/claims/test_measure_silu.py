"""The SiLU minimum measurement against the minimum solved from the derivative by bisection."""
import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.silu import golden_minimum
from layerlab.errors import ConfigError


def _root_of_derivative() -> float:
    # a'(z) = sigma(z) (1 + z (1 - sigma(z))): zero where 1 + z (1 - sigma(z)) = 0, in (-2, -1)
    h = lambda z: 1 + z * (1 - 1 / (1 + math.exp(-z)))  # noqa: E731
    lo, hi = -2.0, -1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if h(mid) > 0 else (mid, hi)  # h increases through its root
    return (lo + hi) / 2


def test_measured_minimum_is_the_root_of_the_derivative():
    z = _root_of_derivative()
    out = get_measure("silu_minimum")(1)
    assert abs(out["z_min"] - z) < 1e-6
    assert abs(out["a_min"] - z / (1 + math.exp(-z))) < 1e-12
    assert out["error"] == pytest.approx(max(abs(z + 1.28), abs(out["a_min"] + 0.28)), abs=1e-6)


def test_golden_minimum_on_a_parabola():
    assert abs(golden_minimum(lambda t: (t - 0.3) ** 2, -1.0, 2.0) - 0.3) < 1e-9


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="z_range"):
        get_measure("silu_minimum")(0, z_range=1.0)
