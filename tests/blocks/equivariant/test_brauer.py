"""BrauerLinear (arXiv:2212.08630): exact O(n)/Sp(n) equivariance on random group elements, the
(l+k-1)!! count, spanning of the numerically solved commutant, factored = reference."""
import pytest
import torch

from layerlab.blocks.equivariant._diagrams import act, commutant_dim, matrix_rank
from layerlab.blocks.equivariant.brauer import (BrauerLinear, brauer_matrix, double_factorial, group_constraints,
                                                perfect_matchings, random_orthogonal, random_symplectic,
                                                symplectic_form)
from layerlab.errors import ConfigError

CASES = [("orthogonal", 3, 1, 1), ("orthogonal", 3, 2, 2), ("orthogonal", 4, 1, 3), ("orthogonal", 2, 3, 1),
         ("orthogonal", 3, 0, 2), ("symplectic", 2, 1, 1), ("symplectic", 4, 2, 2), ("symplectic", 4, 3, 1),
         ("symplectic", 2, 2, 2)]


def _elem(group, n, g):
    return random_orthogonal(n, g) if group == "orthogonal" else random_symplectic(n, g)


def test_random_elements_are_in_the_group():
    g = torch.Generator().manual_seed(0)
    Q = random_orthogonal(5, g)
    assert (Q.T @ Q - torch.eye(5, dtype=torch.float64)).abs().max() < 1e-12
    S, eps = random_symplectic(4, g), symplectic_form(4)
    assert (S.T @ eps @ S - eps).abs().max() < 1e-12 and (S.T @ S - torch.eye(4, dtype=torch.float64)).abs().max() > 1e-2


@pytest.mark.parametrize("group,n,k,l", CASES)
def test_exactly_equivariant(group, n, k, l):
    torch.manual_seed(0)
    m = BrauerLinear(n, k, l, group=group, in_channels=2, out_channels=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, *(n,) * k, generator=g, dtype=torch.float64)
    for _ in range(3):
        G = _elem(group, n, g)
        for mode in ("reference", "factored"):
            y = m(x, mode)
            assert (m(act(G, x, k), mode) - act(G, y, l)).abs().max() <= 1e-12 * max(1.0, y.abs().max().item())


def test_symplectic_layer_is_not_orthogonal_equivariant_and_vice_versa():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    sp = BrauerLinear(4, 2, 0, group="symplectic", dtype=torch.float64)  # x -> sum ε_ab x_ab
    o = BrauerLinear(4, 2, 0, group="orthogonal", dtype=torch.float64)  # x -> sum x_aa (trace)
    Q, S = random_orthogonal(4, g), random_symplectic(4, g)
    assert (sp(act(Q, x, 2)) - sp(x)).abs().max() > 1e-3
    assert (o(act(S, x, 2)) - o(x)).abs().max() > 1e-3


@pytest.mark.parametrize("group,n,k,l", CASES)
def test_count_and_span_of_the_commutant(group, n, k, l):
    diagrams = list(perfect_matchings(k + l))
    assert len(diagrams) == double_factorial(k + l - 1)
    dim = commutant_dim(group_constraints(n, k, l, group))
    assert matrix_rank([brauer_matrix(d, n, k, l, group) for d in diagrams]) == dim
    independent = n >= (k + l) // 2 if group == "orthogonal" else n >= k + l
    if independent:
        assert dim == len(diagrams)


def test_known_dependence_sp2():
    """Sp(2) = SL(2): on (R^2)^{⊗4} the 3 Brauer matrices span only 2 dimensions (one relation)."""
    assert commutant_dim(group_constraints(2, 2, 2, "symplectic")) == 2
    assert [double_factorial(m - 1) for m in (2, 4, 6, 8)] == [1, 3, 15, 105]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("group", ["orthogonal", "symplectic"])
def test_factored_equals_reference(group, dtype, tol):
    torch.manual_seed(0)
    m = BrauerLinear(4, 3, 3, group=group, in_channels=2, out_channels=2, dtype=dtype)
    x = torch.randn(3, 2, 4, 4, 4, dtype=dtype, requires_grad=True)
    outs = []
    for mode in ("reference", "factored"):
        y = m(x, mode)
        outs.append((y,) + torch.autograd.grad((y ** 2).sum(), [x, m.weight]))
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= tol


def test_errors():
    with pytest.raises(ConfigError, match="odd"):
        BrauerLinear(3, 2, 1)
    with pytest.raises(ConfigError, match="even n"):
        BrauerLinear(3, 1, 1, group="symplectic")
    with pytest.raises(ConfigError, match="unknown group"):
        BrauerLinear(3, 1, 1, group="unitary")
