"""The optimizer-solutions measurement (arXiv:2507.12224): its instruments on known cases."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.optimizers_alter_solutions import class_cosine, head_features, mean_erank_fraction
from layerlab.errors import ConfigError
from layerlab.models import Classifier
from layerlab.spec import ModelSpec


def test_class_cosine_of_orthogonal_and_identical_class_means():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    orth = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 2], [0, 0, 2]], dtype=torch.float64)
    assert class_cosine(orth, labels) == pytest.approx(0.0, abs=1e-15)
    same = torch.ones(6, 3, dtype=torch.float64)
    assert class_cosine(same, labels) == pytest.approx(1.0)
    # two classes at 60 degrees, one orthogonal to both: (2 * 0.5 + 4 * 0) / 6
    at60 = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [0.5, math.sqrt(3) / 2, 0],
                         [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    assert class_cosine(at60, labels) == pytest.approx(1 / 6)


def test_erank_fraction_of_orthogonal_and_rank_one_matrices():
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    assert mean_erank_fraction([q]) == pytest.approx(1.0)
    r1 = torch.outer(torch.randn(8, dtype=torch.float64), torch.randn(5, dtype=torch.float64))
    assert mean_erank_fraction([r1]) == pytest.approx(1 / 5, abs=1e-6)
    assert mean_erank_fraction([q, r1]) == pytest.approx(0.6, abs=1e-6)


def test_head_features_are_what_the_head_reads_and_leave_the_mode_alone():
    torch.manual_seed(0)
    model = Classifier(ModelSpec(backbone="classifier", channel="mlp", d_model=16), in_features=64, n_classes=10)
    x = torch.randn(5, 64)
    feats = head_features(model, x)
    assert model.training
    assert torch.allclose(model.head(feats.float()), model.eval()(x), atol=1e-6)


def test_a_tiny_run_gives_every_quantity_and_checks_options():
    m = get_measure("optimizer_solutions")
    out = m(0, adamw_lrs=[1e-3], sgd_lrs=[0.1], muon_lrs=[1e-3], d_model=8, n_layers=1, steps=3, batch_size=8)
    expected = max(out["adamw_update_erank"], out["sgd_update_erank"]) / out["muon_update_erank"]
    assert out["error"] == pytest.approx(expected)
    for name in ("adamw", "sgd", "muon"):
        assert 0 < out[f"{name}_update_erank"] <= 1 and -1 <= out[f"{name}_class_cosine"] <= 1
    with pytest.raises(ConfigError, match="lr grid"):
        m(0, sgd_lrs=[])
