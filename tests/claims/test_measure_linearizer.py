"""linearizer_superposition: exact superposition in the induced spaces (to rounding), a large
Euclidean error for perturbed couplings and none for identity couplings (f = A x is linear)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_superposition_holds_in_the_induced_spaces_only() -> None:
    m = get_measure("linearizer_superposition")
    out = m(0, width=8, depth=2, batch=32)
    assert out["error"] <= 1e-10 and out["inverse_error"] <= 1e-10
    assert out["euclidean_error"] > 0.05
    # with the couplings at their identity init, f(x) = A x: Euclidean superposition holds too
    linear = m(0, width=8, depth=2, batch=32, scale=0.0)
    assert linear["euclidean_error"] <= 1e-12 and linear["error"] <= 1e-12
    assert m(1, width=8, depth=2, batch=32) != out  # the seed matters
    assert m(0, width=8, depth=2, batch=32) == out  # and fixes the result


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="width >= 2"):
        get_measure("linearizer_superposition")(0, width=1)
