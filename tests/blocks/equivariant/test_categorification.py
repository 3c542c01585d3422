"""contract_network (the diagram-factored evaluation, arXiv:2304.14144) on pieces with known
results: identity, permutation of factors, diagonal, trace/contraction, copies, units, free nodes,
operands; and against every family's dense matrix."""
import pytest
import torch

from layerlab.blocks.equivariant import AlternatingLinear, BrauerLinear, GraphAutomorphismLinear, PartitionLinear
from layerlab.blocks.equivariant.categorification import contract_network
from layerlab.blocks.equivariant.graph_automorphism import cycle_graph
from layerlab.errors import ConfigError

X = torch.randn(2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def test_pieces():
    assert torch.equal(contract_network(X, 4, ["a", "b"], ["a", "b"]), X)  # identity
    assert torch.equal(contract_network(X, 4, ["b", "a"], ["a", "b"]), X.transpose(-1, -2))  # swap of factors
    assert torch.allclose(contract_network(X, 4, ["a"], ["a", "a"]), torch.diagonal(X, dim1=-2, dim2=-1))
    assert torch.allclose(contract_network(X, 4, [], ["a", "a"]), torch.diagonal(X, dim1=-2, dim2=-1).sum(-1))
    assert torch.allclose(contract_network(X, 4, [], ["a", "b"]), X.sum((-1, -2)))
    copy = contract_network(X, 4, ["a", "a", "b"], ["a", "b"])  # copy: y[i, i', j] = δ(i, i') x[i, j]
    assert torch.allclose(copy, torch.einsum("bij,ik->bikj", X, torch.eye(4, dtype=torch.float64)))
    unit = contract_network(X, 4, ["a", "b", "c"], ["a", "b"])  # an output-only block: ones
    assert torch.allclose(unit, X.unsqueeze(-1).expand(2, 4, 4, 4))
    assert torch.allclose(contract_network(X, 4, ["a", "b"], ["a", "b"], free_nodes=["z"]), 4 * X)
    M = torch.randn(4, 4, dtype=torch.float64)
    assert torch.allclose(contract_network(X, 4, ["a", "c"], ["a", "b"], [(M, ["b", "c"])]), X @ M)


def test_too_many_nodes():
    with pytest.raises(ConfigError, match="52 nodes"):
        contract_network(torch.ones(1), 1, [f"o{i}" for i in range(60)], [])


@pytest.mark.parametrize("make", [
    lambda: PartitionLinear(4, 2, 2, in_channels=2, out_channels=2, dtype=torch.float64),
    lambda: BrauerLinear(4, 2, 2, group="symplectic", in_channels=2, out_channels=2, dtype=torch.float64),
    lambda: AlternatingLinear(3, 2, 2, in_channels=2, out_channels=2, dtype=torch.float64),
    lambda: GraphAutomorphismLinear(cycle_graph(5), 1, 2, in_channels=2, out_channels=2, dtype=torch.float64),
])
def test_every_diagram_factored_equals_its_matrix(make):
    torch.manual_seed(0)
    m = make()
    x = torch.randn(3, *(m.n,) * m.k, dtype=torch.float64)
    for d in m.diagrams:
        dense = (x.reshape(3, -1) @ m.dense(d).T).reshape(3, *(m.n,) * m.l)
        assert (m.apply(d, x) - dense).abs().max() <= 1e-10 * max(1.0, dense.abs().max().item())
