"""graph_automorphism_span against exact orbit counts computed here by enumeration, and its reports
(a too-small enumeration is reported as a count error: the check can fail)."""
import itertools

import pytest
import torch

from layerlab.blocks.equivariant.graph_automorphism import automorphisms, cycle_graph
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("graph_automorphism_span")


def _orbits_by_enumeration(A, m):
    auts, n, seen, count = automorphisms(A), A.shape[0], set(), 0
    for t in itertools.product(range(n), repeat=m):
        if t not in seen:
            count += 1
            seen.update(tuple(p[i] for i in t) for p in auts)
    return count


@pytest.mark.parametrize("seed", range(3))
def test_counts_and_equivariance(seed):
    out = MEASURE(seed, orders=(2,))
    A = cycle_graph(int(out["n"])) if seed in (0, 1) else None
    if A is not None:
        assert out["orbits"] == _orbits_by_enumeration(A, 2)
    assert out["graphs_kept"] == out["dimension"] == out["orbits"] and out["count_error"] == 0
    assert out["equivariance"] < 1e-12 and out["factored"] < 1e-12 and out["gap"] > 1e-3


def test_small_enumeration_is_caught():
    out = MEASURE(1, orders=(3,), max_vertices=3)  # C6, k + l = 3: 17 graphs for 20 dimensions
    assert out["dimension"] == 20 == _orbits_by_enumeration(cycle_graph(6), 3)
    assert out["count_error"] == 3 and out["error"] > 1


def test_bad_options_and_rng():
    state = torch.random.get_rng_state()
    MEASURE(2, orders=(1,))
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="graphs"):
        MEASURE(0, graphs=("K9",))
    with pytest.raises(ConfigError, match="orders"):
        MEASURE(0, orders=(5,))
