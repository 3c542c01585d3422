"""The Maestro measurements (arXiv:2308.14929): the PCA error is the principal-angle sine of the learned
components (checked against exact PCA directions), the digits figures are consistent and the parameter
counts are those of the truncated factors."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.maestro import sin_largest_angle
from layerlab.errors import ConfigError


def test_sin_largest_angle_closed_form():
    """Two planes in R^3 meeting at angle theta along e1: the largest principal angle is theta."""
    theta = 0.3
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.0, math.cos(theta)], [0.0, math.sin(theta)]], dtype=torch.float64)
    assert sin_largest_angle(a, b) == pytest.approx(math.sin(theta), rel=1e-12)
    assert sin_largest_angle(a, a @ torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)) < 1e-12


def test_pca_measure_separates_lod_from_plain_training():
    out = get_measure("maestro_pca_autoencoder")(0, d=6, rank=2, n=1000, steps=1500, lr=1e-2, batch=64)
    assert out["error"] < 0.1 and out["error_u"] < 0.1  # LoD: every prefix is PCA's
    assert out["error_plain"] > 0.3  # without ordered dropout the first component is not the first PC
    assert out["sin_full_plain"] < 0.1  # ... though the full-rank subspace is


def test_digits_measure_is_consistent():
    out = get_measure("maestro_digits")(0, width=16, steps=40, fractions=[0.25, 1.0], card_fraction=0.25)
    assert out["svd_minus_maestro"] == pytest.approx(out["acc_svd_f0.25"] - out["acc_maestro_f0.25"], abs=1e-12)
    # full rank: 64 -> 16 (rank 16) and 16 -> 16 (rank 16) factorized, head 16 -> 10 dense
    assert out["params_f1"] == 16 * (64 + 16) + 16 + 16 * (16 + 16) + 16 + 16 * 10 + 10
    assert out["params_f0.25"] == 4 * (64 + 16) + 16 + 4 * (16 + 16) + 16 + 16 * 10 + 10
    assert out["params_dense"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert out["acc_svd_f1"] == pytest.approx(out["acc_dense"], abs=1e-12)  # the SVD is exact at full rank


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="card_fraction"):
        get_measure("maestro_digits")(0, fractions=[0.5], card_fraction=0.25)
    with pytest.raises(ConfigError, match="sampler"):
        get_measure("maestro_digits")(0, sampler="pufferfish")
    with pytest.raises(ConfigError, match="rank"):
        get_measure("maestro_pca_autoencoder")(0, d=4, rank=4)
