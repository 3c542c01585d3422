"""The region-definitions measurement (Stargalla, Hertrich & Reichman 2025, arXiv:2505.16716)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.counting_regions import boundary_points, region_gap
from layerlab.errors import ConfigError


def test_a_switch_masked_downstream_is_a_region_but_not_a_piece():
    # f(x) = relu(relu(x_0) + relu(-x_0) - 1) = relu(|x_0| - 1): on x_0 in [-2, 2] the first layer
    # switches at 0 (inside the flat part), the second at -1 and 1: 4 regions, 3 linear pieces
    ws = [torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 1.0]], dtype=torch.float64),
          torch.tensor([[1.0]], dtype=torch.float64)]
    bs = [torch.zeros(2, dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
    a, b = torch.tensor([[-2.0, 0.3]], dtype=torch.float64), torch.tensor([[2.0, -0.2]], dtype=torch.float64)
    assert region_gap(ws, bs, a, b) == (4, 3)


def test_boundary_points_lie_on_the_square():
    p = boundary_points(200, torch.Generator().manual_seed(0))
    assert torch.allclose(p.abs().amax(dim=1), torch.ones(200, dtype=torch.float64))
    assert set((p == 1).any(1).tolist()) == {True, False}


def test_shallow_networks_never_differ_and_the_measurement_is_seeded():
    m = get_measure("region_definitions")
    out = m(0, n_nets=4, n_segments=4)
    assert out["differ_shallow"] == 0.0 and out["error"] == 1 - out["differ"] and 0 <= out["gap"] < 1
    assert out == m(0, n_nets=4, n_segments=4)
    with pytest.raises(ConfigError, match="width"):
        m(0, width=0)
