"""matrix_function_layer: exact equivariance and resolvent = spectral on drawn graphs, the far node's
influence is non-zero, and a strictly local layer would be reported (the rule can fail)."""
import pytest
import torch

from layerlab.blocks.graph.matrix_function import MatrixFunctionLayer
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("matrix_function_layer")


@pytest.mark.parametrize("seed", range(3))
def test_exact_and_non_local(seed):
    out = MEASURE(seed)
    assert out["equivariance"] < 1e-12 and out["resolvent"] < 1e-10 and out["influence"] > 1e-12
    assert out["distance"] >= 2 and out["error"] < 1e-9


def test_a_local_layer_is_reported(monkeypatch):
    """A layer without the matrix function (h W_self only, 0 hops) gives the far node no influence."""
    monkeypatch.setattr(MatrixFunctionLayer, "forward", lambda self, h, adjacency, mode="resolvent": self.W_self(h))
    out = MEASURE(0)
    assert out["influence"] == 0 and out["error"] >= 1


def test_bad_options_and_rng():
    state = torch.random.get_rng_state()
    MEASURE(1, nodes=5)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="nodes"):
        MEASURE(0, nodes=2)
