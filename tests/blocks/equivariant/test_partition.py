"""PartitionLinear (arXiv:2212.08648): exact S_n-equivariance, the diagram count (Bell numbers,
Stirling sums for n < k + l), linear independence against the numerically solved commutant, and
the factored (tensor-network) form against the dense reference."""
import pytest
import torch

from layerlab.blocks.equivariant import PartitionLinear, partition_matrix
from layerlab.blocks.equivariant._diagrams import (act, bell, commutant_dim, matrix_rank, permutation_matrix,
                                                   stirling2, tensor_power)
from layerlab.errors import ConfigError, ShapeError

SHAPES = [(4, 2, 2), (3, 2, 2), (5, 1, 2), (2, 3, 1), (4, 0, 2), (4, 2, 0), (3, 1, 1), (1, 1, 1)]


def _layer(n, k, l, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = PartitionLinear(n, k, l, in_channels=2, out_channels=3, dtype=dtype)
    if m.bias is not None:
        with torch.no_grad():
            m.bias.normal_()
    return m


def sn_pairs(n, k, l):
    gens = [[1, 0] + list(range(2, n)), list(range(1, n)) + [0]] if n > 1 else [[0]]
    return [(tensor_power(permutation_matrix(p), l), tensor_power(permutation_matrix(p), k)) for p in gens]


@pytest.mark.parametrize("n,k,l", SHAPES)
def test_exactly_equivariant_on_random_permutations(n, k, l):
    m = _layer(n, k, l)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, *(n,) * k, generator=g, dtype=torch.float64)
    for _ in range(5):
        P = permutation_matrix(torch.randperm(n, generator=g).tolist())
        for mode in ("reference", "factored"):
            err = (m(act(P, x, k), mode) - act(P, m(x, mode), l)).abs().max()
            assert err < 1e-12


def test_not_equivariant_under_a_generic_orthogonal_matrix():
    m = _layer(4, 1, 1)  # λ I + γ 11^T (+ bias 1): commutes with permutations, not with every rotation
    Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    assert (m(act(Q, x, 1)) - act(Q, m(x), 1)).abs().max() > 1e-3


@pytest.mark.parametrize("n,k,l", SHAPES)
def test_count_basis_and_commutant(n, k, l):
    m = _layer(n, k, l)
    assert len(m.diagrams) == sum(stirling2(k + l, t) for t in range(1, min(n, k + l) + 1)) + (k + l == 0)
    if n >= k + l:
        assert len(m.diagrams) == bell(k + l)
    dim = commutant_dim(sn_pairs(n, k, l))
    assert matrix_rank([m.dense(d) for d in m.diagrams]) == len(m.diagrams) == dim


def test_bell_and_stirling():
    assert [bell(m) for m in range(8)] == [1, 1, 2, 5, 15, 52, 203, 877]
    assert [stirling2(4, t) for t in range(5)] == [0, 1, 7, 6, 1]


def test_k1_l1_is_deep_sets():
    """For k = l = 1 the diagrams are {1, 1'} (identity) and {1}{1'} (all ones): λ I + γ 11^T."""
    mats = {d: partition_matrix(d, 4, 1, 1) for d in [((0, 1),), ((0,), (1,))]}
    assert torch.equal(mats[((0, 1),)], torch.eye(4, dtype=torch.float64))
    assert torch.equal(mats[((0,), (1,))], torch.ones(4, 4, dtype=torch.float64))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("n,k,l", [(4, 2, 2), (3, 3, 1), (5, 1, 2)])
def test_factored_equals_reference_with_gradients(n, k, l, dtype, tol):
    m = _layer(n, k, l, dtype)
    x = torch.randn(3, 2, *(n,) * k, dtype=dtype, requires_grad=True)
    outs = []
    for mode in ("reference", "factored"):
        y = m(x, mode)
        grads = torch.autograd.grad((y * torch.cos(y)).sum(), [x, m.weight, m.bias])
        outs.append((y,) + grads)
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= tol


def test_state_dict_round_trip_and_errors():
    a, b = _layer(3, 2, 1, seed=0), _layer(3, 2, 1, seed=5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ShapeError, match="expected input"):
        a(torch.randn(2, 2, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="unknown mode"):
        a(x, "fast")
    with pytest.raises(ConfigError, match="n must be"):
        PartitionLinear(0, 1, 1)
    with pytest.raises(ConfigError, match="too large"):
        PartitionLinear(40, 3, 3)
    with pytest.raises(ConfigError, match="in_channels"):
        PartitionLinear(3, 1, 1, in_channels=0)
