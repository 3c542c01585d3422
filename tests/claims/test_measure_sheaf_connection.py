"""connection_laplacian_sections: flat data give d sections and a PSD Laplacian; a wrong map (the
transposed alignment) would be caught as a kernel error."""
import pytest
import torch

from layerlab.blocks.graph import sheaf
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("connection_laplacian_sections")


@pytest.mark.parametrize("seed", range(3))
def test_flat_data_give_d_sections(seed):
    out = MEASURE(seed)
    assert out["kernel_dim"] == out["h0"] == 3 and out["kernel_error"] == 0
    assert out["psd"] < 1e-12 and out["section_residual"] < 1e-10 and out["error"] < 1e-9
    assert out["generic_kernel"] < 3 and out["edges"] == 18


def test_transposed_alignment_is_caught(monkeypatch):
    """F_u = O_vu^T instead of O_vu breaks consistency: fewer sections than d."""
    right = sheaf.connection_maps

    def wrong(x, edge_index, d):
        m = right(x, edge_index, d)
        return torch.stack([m[:, 0], m[:, 1].transpose(-1, -2)], 1)

    monkeypatch.setattr("layerlab.claims.measures.sheaf_connection.connection_maps", wrong)
    assert MEASURE(0)["kernel_error"] > 0


def test_bad_options_and_rng():
    state = torch.random.get_rng_state()
    MEASURE(1, nodes=6, chords=2, p=4, d=2)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="d < p"):
        MEASURE(0, p=3, d=3)
    with pytest.raises(ConfigError, match="nodes"):
        MEASURE(0, nodes=2)
