"""Memory capacity (lens.capacity) against the controllability-rank theorem and exact delay lines."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import capacity


def random_pair(n: int, seed: int, rho: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return rho * A / torch.linalg.eigvals(A).abs().max(), torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_capacity_equals_the_controllability_rank(seed):
    A, C = random_pair(8, seed)
    assert capacity.controllability_rank(A, C) == 8
    assert float(capacity.linear_memory_capacity(A, C, max_delay=2000).sum()) == pytest.approx(8.0, abs=1e-6)
    # C inside an invariant subspace of dimension 3: rank 3, and MC = 3
    B = torch.block_diag(A[:3, :3] * 0.9 / torch.linalg.eigvals(A[:3, :3]).abs().max(), A[3:, 3:] * 0.5 /
                         torch.linalg.eigvals(A[3:, 3:]).abs().max())
    C3 = torch.cat([C[:3], torch.zeros(5, dtype=torch.float64)])
    assert capacity.controllability_rank(B, C3) == 3
    assert float(capacity.linear_memory_capacity(B, C3, max_delay=2000).sum()) == pytest.approx(3.0, abs=1e-6)


def test_delay_line_remembers_exactly_n_steps():
    # x_t = (z_t, z_{t-1}, ..., z_{t-n+1}): MC_tau = 1 for tau < n and 0 after, in both forms
    n = 5
    shift, e1 = torch.diag(torch.ones(n - 1, dtype=torch.float64), -1), torch.eye(n, dtype=torch.float64)[0]
    closed = capacity.linear_memory_capacity(shift, e1, max_delay=12)
    assert torch.allclose(closed, torch.tensor([1.0] * n + [0.0] * 7, dtype=torch.float64), atol=1e-12)
    z = torch.randn(3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = capacity.esn_states(shift, e1, z, activation=None, washout=50)
    emp = capacity.memory_capacity(x, z[50:], max_delay=12)
    assert torch.allclose(emp[:n], torch.ones(n, dtype=torch.float64), atol=1e-10)
    assert float(emp[n:].max()) < 20 / 3000  # R^2 of independent noise on n regressors: about n / T


def test_simulated_linear_network_matches_the_closed_form():
    A, C = random_pair(6, 3)
    z = torch.randn(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    emp = capacity.memory_capacity(capacity.esn_states(A, C, z, activation=None), z[100:], max_delay=60)
    closed = capacity.linear_memory_capacity(A, C, max_delay=60)
    assert float((emp - closed).abs().max()) < 0.02  # sampling error ~ N / T per delay
    assert float(emp.sum() - closed.sum()) == pytest.approx(0.0, abs=0.1)
    # a tanh network driven by a tiny input is linear to first order: the same capacity
    tiny = capacity.memory_capacity(capacity.esn_states(A, C, 1e-4 * z), z[100:], max_delay=60)
    assert float(tiny.sum()) == pytest.approx(float(emp.sum()), abs=0.02)


def test_errors():
    A, C = random_pair(4, 0, rho=1.2)
    with pytest.raises(ConfigError, match="spectral radius"):
        capacity.linear_memory_capacity(A, C)
    with pytest.raises(ShapeError, match="N entries"):
        capacity.linear_memory_capacity(A, torch.ones(3))
    with pytest.raises(ConfigError, match="max_delay"):
        capacity.memory_capacity(torch.zeros(10, 2), torch.zeros(10), max_delay=8)
