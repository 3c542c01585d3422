"""Boolean Fourier analysis and the canonical-holdout error (Abbe et al. 2022, arXiv:2205.13647)."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory.boolean_influence import (canonical_holdout_error, cube, fourier_coefficients,
                                                    fourier_coefficients_reference, influence)


def test_fast_transform_equals_definition_and_inverts():
    g = torch.Generator().manual_seed(0)
    for d in (1, 3, 6):
        v = torch.randn(2**d, generator=g, dtype=torch.float64)
        c = fourier_coefficients(v)
        assert torch.allclose(c, fourier_coefficients_reference(v), rtol=1e-12, atol=1e-13)
        assert torch.allclose((c**2).sum(), (v**2).mean(), rtol=1e-12)  # Parseval


def test_known_influences():
    x = cube(5)
    parity = x[:, 0] * x[:, 2] * x[:, 4]
    c = fourier_coefficients(parity)
    assert [influence(c, k) for k in range(5)] == pytest.approx([1, 0, 1, 0, 1], abs=1e-14)
    maj3 = torch.sign(x[:, 0] + x[:, 1] + x[:, 2])  # Inf_i(Maj_3) = 1/2, and Pr[f(x) != f(x^i)] agrees
    cm = fourier_coefficients(maj3)
    flipped = x.clone()
    flipped[:, 1] *= -1
    assert influence(cm, 1) == pytest.approx(0.5, abs=1e-14)
    assert influence(cm, 1) == pytest.approx(float((torch.sign(flipped[:, :3].sum(1)) != maj3).double().mean()))
    assert influence(cm, 4) == pytest.approx(0.0, abs=1e-14)


def test_holdout_error_is_the_error_of_the_min_degree_interpolator():
    x = cube(6)
    f = x[:, 0] * x[:, 1] * x[:, 2] + 0.5 * x[:, 3] * x[:, 4] - 0.7 * x[:, 0] * x[:, 5] + 0.3 * x[:, 0]
    xs = x.clone()
    xs[:, 0] = 1
    g = xs[:, 0] * xs[:, 1] * xs[:, 2] + 0.5 * xs[:, 3] * xs[:, 4] - 0.7 * xs[:, 0] * xs[:, 5] + 0.3 * xs[:, 0]
    assert canonical_holdout_error(fourier_coefficients(f), 0) == pytest.approx(float((f - g).square().mean()), rel=1e-12)
    assert canonical_holdout_error(fourier_coefficients(f), 0) == pytest.approx(2 * (1 + 0.49 + 0.09), rel=1e-12)


def test_bad_input():
    with pytest.raises(ShapeError, match="2\\^d"):
        fourier_coefficients(torch.ones(6))
    with pytest.raises(ConfigError, match="coordinate k"):
        influence(torch.ones(8), 3)
