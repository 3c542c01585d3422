"""jellyfish_alternating against the Stirling-number count computed here, its drawn settings, and
the odd-permutation gap (an S_n-equivariant layer would have none)."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import stirling2
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("jellyfish_alternating")


@pytest.mark.parametrize("seed", range(5))
def test_counts_and_equivariance(seed):
    out = MEASURE(seed)
    n, k, l = int(out["n"]), int(out["k"]), int(out["l"])
    assert 2 <= k + l <= 4 and 3 <= n <= k + l + 1
    jelly = stirling2(k + l, n) + stirling2(k + l, n - 1)
    assert out["jellyfish"] == jelly >= 1
    assert out["formula"] == out["diagrams"] == out["dimension"] == out["rank"]
    assert out["count_error"] == 0 and out["equivariance"] < 1e-12 and out["anti"] < 1e-12
    assert out["odd_gap"] > 1e-3 and out["error"] < 1e-9


def test_rng_and_bad_options():
    state = torch.random.get_rng_state()
    assert len({(o["n"], o["k"], o["l"]) for o in (MEASURE(s) for s in range(6))}) > 1
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="max_order"):
        MEASURE(0, max_order=5)
