"""AlternatingLinear (arXiv:2301.10152): exact A_n-equivariance on random even permutations, the
jellyfish maps change sign under odd ones, the dimension against the numerical A_n commutant, the
determinant tensor, factored = reference."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import (act, commutant_dim, matrix_rank, permutation_matrix, stirling2,
                                                   tensor_power)
from layerlab.blocks.equivariant.jellyfish import (AlternatingLinear, alternating_generators, determinant_tensor,
                                                   jellyfish_matrix, parity, random_permutation)
from layerlab.errors import ConfigError

SHAPES = [(3, 1, 1), (3, 2, 1), (3, 2, 2), (4, 2, 2), (4, 1, 2), (2, 1, 1), (4, 3, 1), (5, 2, 2)]


def _layer(n, k, l, jellyfish_only=False, dtype=torch.float64):
    torch.manual_seed(0)
    m = AlternatingLinear(n, k, l, in_channels=2, out_channels=3, dtype=dtype)
    with torch.no_grad():
        if m.bias is not None:
            m.bias.normal_()
        if jellyfish_only:
            for w, d in zip(m.weight, m.diagrams):
                if d[0] == "partition":
                    w.zero_()
            if m.bias is not None:
                for b, d in zip(m.bias, m.bias_diagrams):
                    if d[0] == "partition":
                        b.zero_()
    return m


@pytest.mark.parametrize("n,k,l", SHAPES)
def test_equivariant_under_even_permutations(n, k, l):
    m = _layer(n, k, l)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    for _ in range(4):
        P = permutation_matrix(random_permutation(n, 0, g))
        for mode in ("reference", "factored"):
            assert (m(act(P, x, k), mode) - act(P, m(x, mode), l)).abs().max() < 1e-12


@pytest.mark.parametrize("n,k,l", [s for s in SHAPES if s[0] > 2])
def test_jellyfish_change_sign_under_odd_permutations(n, k, l):
    m = _layer(n, k, l, jellyfish_only=True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    P = permutation_matrix(random_permutation(n, 1, g))
    y, yp = m(x), m(act(P, x, k))
    assert (yp + act(P, y, l)).abs().max() < 1e-12  # anti-equivariant ...
    assert (yp - act(P, y, l)).abs().max() > 1e-3  # ... hence not equivariant


@pytest.mark.parametrize("n,k,l", SHAPES)
def test_dimension_against_the_commutant(n, k, l):
    m = _layer(n, k, l)
    formula = sum(stirling2(k + l, t) for t in range(1, n + 1)) + stirling2(k + l, n) + stirling2(k + l, n - 1)
    pairs = [(tensor_power(permutation_matrix(p), l), tensor_power(permutation_matrix(p), k))
             for p in alternating_generators(n)]
    assert len(m.diagrams) == formula == commutant_dim(pairs) == matrix_rank([m.dense(d) for d in m.diagrams])


def test_no_jellyfish_beyond_k_plus_l_and_determinant():
    assert all(d[0] == "partition" for d in _layer(5, 1, 2).diagrams)
    T = determinant_tensor(3)
    assert T[0, 1, 2] == 1 and T[1, 0, 2] == -1 and T[2, 0, 1] == 1 and T[0, 0, 1] == 0 and T.abs().sum() == 6
    # (k, l) = (0, 3), n = 3, one block per vertex: H is the determinant tensor itself
    assert torch.equal(jellyfish_matrix(((0,), (1,), (2,)), 3, 0, 3).reshape(3, 3, 3), T)
    assert parity([1, 0, 2]) == 1 and parity([1, 2, 0]) == 0


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_factored_equals_reference(dtype, tol):
    m = _layer(4, 2, 2, dtype=dtype)
    x = torch.randn(3, 2, 4, 4, dtype=dtype, requires_grad=True)
    outs = []
    for mode in ("reference", "factored"):
        y = m(x, mode)
        outs.append((y,) + torch.autograd.grad((y ** 2).sum(), [x, m.weight, m.bias]))
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= tol


def test_errors():
    with pytest.raises(ConfigError, match="n <= 7"):
        AlternatingLinear(8, 1, 1)
