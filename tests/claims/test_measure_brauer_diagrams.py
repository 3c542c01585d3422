"""brauer_diagram_count against exact counts ((l+k-1)!!), its drawn settings, and the rank/commutant
relation (which fails for a wrong form: checked with the symplectic matrices against O(n))."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import commutant_dim, matrix_rank
from layerlab.blocks.equivariant.brauer import brauer_matrix, group_constraints, perfect_matchings
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("brauer_diagram_count")


@pytest.mark.parametrize("seed", range(6))
def test_counts_and_equivariance(seed):
    out = MEASURE(seed)
    n, k, l = int(out["n"]), int(out["k"]), int(out["l"])
    assert (k + l) in (2, 4) and 2 <= n <= k + l + 1 and out["symplectic"] == seed % 2
    assert out["diagrams"] == {2: 1, 4: 3}[k + l] and out["rank"] == out["dimension"]
    assert out["count_error"] == 0 and out["equivariance"] < 1e-12 and out["factored"] < 1e-12


def test_count_alone_cannot_tell_the_forms_apart():
    """ε (Sp) and δ (O) give different 1-dim spans of the same count: why the measure also checks
    equivariance on random group elements."""
    mats = [brauer_matrix(d, 4, 2, 0, "symplectic") for d in perfect_matchings(2)]
    assert matrix_rank(mats) == 1 == commutant_dim(group_constraints(4, 2, 0, "orthogonal"))
    ortho = brauer_matrix(((0, 1),), 4, 2, 0, "orthogonal")
    assert matrix_rank(mats + [ortho]) == 2  # ε and δ differ: a count check alone would not see it


def test_seeds_vary_and_rng_untouched_and_bad_options():
    state = torch.random.get_rng_state()
    assert len({(o["n"], o["k"], o["l"]) for o in (MEASURE(s) for s in range(8))}) > 1
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="orders"):
        MEASURE(0, orders=(3,))
