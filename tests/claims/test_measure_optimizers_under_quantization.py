"""The optimizers-under-quantization measurement (2509.23500): Spearman's correlation against exact
values, the per-model reads it correlates, and the statistic it reports."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures._fit import one_thread
from layerlab.claims.measures._quantize_digits import spearman, train_digits
from layerlab.claims.measures.optimizers_under_quantization import relative_weight_error
from layerlab.compress.quantize import dequantize, symmetric_rtn
from layerlab.errors import ConfigError


def test_spearman_exact_values():
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0, abs=1e-15)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0, abs=1e-15)
    # ranks (1, 2, 3, 4, 5) vs (2, 1, 4, 3, 5): 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [0.2, 0.1, 0.4, 0.3, 0.5]) == pytest.approx(0.8, abs=1e-15)
    # a tie gets the mean rank: (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Pearson's r of the ranks
    r = torch.corrcoef(torch.tensor([[1, 2.5, 2.5, 4], [1, 2, 3, 4]], dtype=torch.float64))[0, 1]
    assert spearman([1, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(float(r), abs=1e-15)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1, 2], [1, 2]))
    with pytest.raises(ConfigError):
        spearman([1, 2, 3], [1, 2])


def test_training_helper_is_seeded_and_the_weight_error_is_the_mean_over_layers():
    x = torch.rand(64, 8, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0.5).long()
    with one_thread():
        a = train_digits(x, y, 3, optimizer="muon", lr=1e-2, width=8, depth=2, steps=10, batch=16)
        b = train_digits(x, y, 3, optimizer="muon", lr=1e-2, width=8, depth=2, steps=10, batch=16)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ConfigError, match="optimizer"):
        train_digits(x, y, 0, optimizer="lion", lr=1e-2, width=8, depth=1, steps=1)
    w = a[0].weight.detach()
    expected = float((dequantize(*symmetric_rtn(w, 3)) - w).norm() / w.norm())
    errs = [float((dequantize(*symmetric_rtn(m.weight, 3)) - m.weight.detach()).norm() / m.weight.norm())
            for m in a if isinstance(m, torch.nn.Linear)]
    assert errs[0] == pytest.approx(expected) and relative_weight_error(a, 3) == pytest.approx(sum(errs) / 3)


def test_measurement_reports_its_statistic():
    m = get_measure("optimizer_quantization_outliers")
    out = m(0, adamw_lrs=[3e-3, 1e-2], sgd_lrs=[0.1], muon_lrs=[3e-3], width=16, depth=1, steps=60, bits=3,
            min_val_accuracy=0.0, qat=False)
    assert out["n_models"] == 4
    assert out["error"] == max(out["rho_mmr"], out["rho_kurtosis"])
    assert -1 <= out["rho_mmr"] <= 1 and -1 <= out["rho_act_kurtosis"] <= 1
    assert out["adamw_lr"] in (3e-3, 1e-2) and 0 < out["muon_test_accuracy"] <= 1
    with pytest.raises(ConfigError, match="bits"):
        m(0, bits=1)
