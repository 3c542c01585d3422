"""The LSSL views measurement: it returns the relative difference it claims (recomputed here with the
kernel summed by hand), and a wrong kernel would be caught."""
import pytest
import torch

from layerlab.blocks.mixers.lssl import LSSL
from layerlab.claims.measures.lssl import lssl_views_agree
from layerlab.errors import ConfigError


def test_views_agree_and_measure_matches_by_hand():
    out = lssl_views_agree(0, d_model=2, d_state=4, length=20)
    assert out["error"] < 1e-10
    g = torch.Generator().manual_seed(0)  # the measurement's draws, in its order
    block = LSSL(2, d_state=4, mixing="none", dtype=torch.float64, generator=g)
    u = torch.randn(1, 20, 2, dtype=torch.float64, generator=g)
    K = block.kernel(20, torch.float64).detach()
    y = torch.stack([sum(K[:, j] * u[0, t - j] for j in range(t + 1)) for t in range(20)]) + block.D.detach() * u[0]
    assert out["output_norm"] == pytest.approx(y.norm().item(), rel=1e-10)
    wrong = torch.roll(K, 1, dims=-1)  # a kernel shifted by one step is far off
    y_wrong = torch.stack([sum(wrong[:, j] * u[0, t - j] for j in range(t + 1)) for t in range(20)])
    assert (y_wrong + block.D.detach() * u[0] - y).norm() / y.norm() > 1e-4


def test_bad_options():
    with pytest.raises(ConfigError, match="length"):
        lssl_views_agree(0, length=0)
