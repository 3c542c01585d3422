"""partition_diagram_count against exact counts: Bell numbers, the drawn orders, and the numerical
commutant of S_n (which differs from B(k + l) when n < k + l: the check can fail)."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import commutant_dim, permutation_matrix, tensor_power
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("partition_diagram_count")


@pytest.mark.parametrize("seed", range(4))
def test_counts_agree_and_layer_is_equivariant(seed):
    out = MEASURE(seed, min_order=3)
    n, k, l = int(out["n"]), int(out["k"]), int(out["l"])
    assert 3 <= k + l <= 4 and k + l <= n <= max(k + l, 2) + 1
    assert out["bell"] == [1, 1, 2, 5, 15][k + l] == out["diagrams"] == out["dimension"] == out["rank"]
    assert out["count_error"] == 0 and out["equivariance"] < 1e-12 and out["factored"] < 1e-12
    assert out["error"] < 1e-9


def test_commutant_is_smaller_than_bell_when_n_is_small():
    """S_3 on (R^3)^{⊗4}: 14 partitions with <= 3 blocks, not B(4) = 15 (the measure would report it)."""
    gens = [[1, 0, 2], [1, 2, 0]]
    assert commutant_dim([(tensor_power(permutation_matrix(p), 2), tensor_power(permutation_matrix(p), 2))
                          for p in gens]) == 14


def test_seeds_differ_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    assert len({(o["n"], o["k"], o["l"]) for o in (MEASURE(s) for s in range(8))}) > 1
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_options():
    with pytest.raises(ConfigError, match="max_order"):
        MEASURE(0, max_order=6)
    with pytest.raises(ConfigError, match="min_order"):
        MEASURE(0, min_order=5)
    with pytest.raises(ConfigError, match="extra_n"):
        MEASURE(0, extra_n=-1)
