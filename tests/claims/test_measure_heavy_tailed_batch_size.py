"""The batch-size measurement of Martin & Mahoney (arXiv:1810.01075): what it reads off each model."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.heavy_tailed_batch_size import _read
from layerlab.errors import ConfigError
from layerlab.lens import spectra


def _mlp(width: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return model


def test_random_gaussian_layers_sit_on_the_marchenko_pastur_edge():
    out = _read(_mlp(128, 0), min_evals=50, seed=0)
    assert out["layers"] == 2  # the 10-eigenvalue output layer is left out
    # i.i.d. Gaussian entries: lambda_max of W^T W / N is the MP edge lambda+ up to O(M^(-2/3))
    assert out["mp_soft_rank"] == pytest.approx(1.0, abs=0.1)
    assert out["n_spikes"] <= 2 and out["num_traps"] == 0
    assert out["alpha"] == pytest.approx((out["alpha.0.weight"] + out["alpha.2.weight"]) / 2)


def test_a_planted_spike_lowers_the_soft_rank_and_is_counted():
    model = _mlp(128, 0)
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(128, generator=g), torch.randn(128, generator=g)
    with torch.no_grad():
        model[2].weight += 3.0 * torch.outer(u / u.norm(), v / v.norm())  # s_max ~ 3 against the bulk edge 2
    out = _read(model, min_evals=50, seed=0)
    w = model[2].weight.detach().double()
    lam_max = float(torch.linalg.matrix_norm(w, 2)) ** 2 / 128
    lam_plus = spectra.mp_edges(1.0, float(spectra.marchenko_pastur(spectra.esd(w), aspect_ratio=1.0).sigma2))[1]
    plain = _read(_mlp(128, 0), min_evals=50, seed=0)
    assert out["mp_soft_rank.2.weight"] == pytest.approx(lam_plus / lam_max, rel=1e-9)
    assert out["mp_soft_rank.0.weight"] == plain["mp_soft_rank.0.weight"]  # the other layer is untouched
    assert lam_plus / lam_max < 0.6 and out["n_spikes"] >= plain["n_spikes"] + 1


def test_measurement_reports_the_gap_of_the_two_batch_sizes():
    out = get_measure("heavy_tail_batch_size")(0, width=64, small_batch=32, large_batch=256, epochs=2)
    assert out["alpha_gap"] == pytest.approx(out["small.alpha"] - out["large.alpha"])
    assert out["small.layers"] == out["large.layers"] == out["init.layers"] == 2
    assert 0.1 <= out["large.train_accuracy"] <= out["small.train_accuracy"] + 0.2
    with pytest.raises(ConfigError, match="small_batch < large_batch"):
        get_measure("heavy_tail_batch_size")(0, small_batch=64, large_batch=64)
