"""GraphAutomorphismLinear (arXiv:2307.07810): X_H by hand for small H, exact equivariance under
every automorphism (brute force) and not under other permutations, the kept bilabelled graphs span
the numerically solved commutant (Burnside orbit count too), factored = reference."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import act, commutant_dim, permutation_matrix
from layerlab.blocks.equivariant.graph_automorphism import (BilabelledGraph, GraphAutomorphismLinear,
                                                            automorphism_constraints, automorphisms, cycle_graph,
                                                            homomorphism_matrix, orbit_count, path_graph)
from layerlab.errors import ConfigError

CASES = [("C5", 1, 1, 3), ("C5", 2, 1, 3), ("C6", 1, 1, 3), ("P4", 0, 2, 3), ("P4", 2, 1, 4)]
GRAPHS = {"C5": cycle_graph(5), "C6": cycle_graph(6), "P4": path_graph(4)}


def _layer(name, k, l, mv, dtype=torch.float64):
    torch.manual_seed(0)
    return GraphAutomorphismLinear(GRAPHS[name], k, l, max_vertices=mv, in_channels=2, out_channels=2, dtype=dtype)


def test_automorphism_groups():
    assert len(automorphisms(cycle_graph(5))) == 10 and len(automorphisms(cycle_graph(6))) == 12  # dihedral
    assert sorted(automorphisms(path_graph(4))) == [[0, 1, 2, 3], [3, 2, 1, 0]]


def test_homomorphism_matrices_by_hand():
    A = cycle_graph(5)
    path = lambda m: BilabelledGraph(m + 1, tuple((i, i + 1) for i in range(m)), (0,), (m,))  # noqa: E731
    for m in range(4):  # a path of length m between the labels counts walks: A^m
        assert torch.equal(homomorphism_matrix(path(m), A), torch.linalg.matrix_power(A, m))
    two = BilabelledGraph(2, (), (0,), (1,))  # two unconnected labelled vertices: all ones
    assert torch.equal(homomorphism_matrix(two, A), torch.ones(5, 5, dtype=torch.float64))
    loop_free = BilabelledGraph(3, ((0, 2), (1, 2)), (0,), (1,))  # common neighbours: A^2 again
    assert torch.equal(homomorphism_matrix(loop_free, A), A @ A)


@pytest.mark.parametrize("name,k,l,mv", CASES)
def test_equivariant_under_every_automorphism_only(name, k, l, mv):
    m = _layer(name, k, l, mv)
    n = m.n
    x = torch.randn(3, 2, *(n,) * k, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    auts = automorphisms(GRAPHS[name])
    for p in auts:
        P = permutation_matrix(p)
        for mode in ("reference", "factored"):
            assert (m(act(P, x, k), mode) - act(P, m(x, mode), l)).abs().max() < 1e-12
    other = [1, 0] + list(range(2, n))  # a transposition of adjacent vertices: not an automorphism here
    assert other not in auts
    P = permutation_matrix(other)
    assert (m(act(P, x, k)) - act(P, m(x), l)).abs().max() > 1e-3


@pytest.mark.parametrize("name,k,l,mv", CASES)
def test_kept_graphs_span_the_commutant(name, k, l, mv):
    m = _layer(name, k, l, mv)
    dim = commutant_dim(automorphism_constraints(GRAPHS[name], k, l))
    assert dim == orbit_count(GRAPHS[name], k + l) == len(m.diagrams) and m.spans_commutant()


def test_too_few_vertices_do_not_span():
    """C6 with k + l = 3: bilabelled graphs on <= 3 vertices give 17 of the 20 dimensions."""
    m = _layer("C6", 2, 1, 3)
    assert len(m.diagrams) == 17 and not m.spans_commutant()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_factored_equals_reference(dtype, tol):
    m = _layer("C5", 2, 1, 3, dtype)
    x = torch.randn(3, 2, 5, 5, dtype=dtype, requires_grad=True)
    outs = []
    for mode in ("reference", "factored"):
        y = m(x, mode)
        outs.append((y,) + torch.autograd.grad((y ** 2).sum(), [x, m.weight]))
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= tol


def test_errors():
    with pytest.raises(ConfigError, match="symmetric 0/1"):
        GraphAutomorphismLinear(torch.ones(3, 3), 1, 1)
    with pytest.raises(ConfigError, match="max_vertices"):
        GraphAutomorphismLinear(cycle_graph(4), 1, 1, max_vertices=9)
