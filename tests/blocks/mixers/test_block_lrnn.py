"""Block-diagonal input-dependent LRNN (Fan, Chi & Rudnicky 2023): the column p-norm constraint,
an automaton run exactly with hand-set weights (counting mod m, parity) at lengths far beyond
any training length, the matrix scan, options (the shared contract runs the defaults)."""
import pytest
import torch

from layerlab.blocks.mixers.block_lrnn import BlockLRNN, column_normalize
from layerlab.blocks.mixers.matrix_scan import matrix_recurrence_loop, matrix_scan
from layerlab.errors import ConfigError, ShapeError

from .contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err


def test_column_normalize_bounds_each_column_and_leaves_the_unit_ball_alone():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(50, 4, 4, generator=g, dtype=torch.float64) * 2
    p = 1.2
    out = column_normalize(V, p)
    norms_in = (V.abs() ** p).sum(-2) ** (1 / p)
    norms_out = (out.abs() ** p).sum(-2) ** (1 / p)
    big = norms_in > 1
    assert big.any() and (~big).any()
    assert torch.allclose(norms_out[big], torch.ones_like(norms_out[big]), atol=1e-12)  # on the sphere
    small = (~big).unsqueeze(-2).expand_as(V)
    assert torch.equal(out[small], V[small])  # inside the ball: untouched
    # a direction is kept: each column is a positive multiple of the original
    cos = (out * V).sum(-2) / (out.norm(dim=-2) * V.norm(dim=-2))
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-12)


def test_transitions_have_columns_in_the_unit_p_ball():
    torch.manual_seed(1)
    block = BlockLRNN(12, block_size=3, p=1.5, dtype=torch.float64)
    with torch.no_grad():
        block.g.weight.mul_(10.0)  # push most columns outside the ball
        A = block.transitions(torch.randn(4, 9, 12, dtype=torch.float64))
    assert A.shape == (4, 9, 4, 3, 3)
    col = (A.abs() ** 1.5).sum(-2) ** (1 / 1.5)
    assert col.max() <= 1 + 1e-12 and col.max() > 0.999


def counter(m: int) -> BlockLRNN:
    """Weights that count mod m in one block of size m, inputs one-hot tokens 0..m-1:
    A(e_j) = P^j (the cyclic shift by j: one-hot columns, untouched by the norm constraint),
    B e_j = e_j - e_0, so the state after a prefix with sum s is e_s - e_0 (the affine map
    v -> P^j v + e_j - e_0 sends e_s - e_0 to e_{s+j} - e_0 and the zero state is count 0)."""
    block = BlockLRNN(m, block_size=m, p=1.2, dtype=torch.float64)
    P = torch.roll(torch.eye(m, dtype=torch.float64), 1, dims=0)  # P e_s = e_{s+1}
    with torch.no_grad():
        block.g.bias.zero_()
        for j in range(m):
            block.g.weight[:, j] = torch.linalg.matrix_power(P, j).flatten()
        block.B.weight.copy_(torch.eye(m, dtype=torch.float64) - torch.nn.functional.one_hot(
            torch.zeros(m, dtype=torch.long), m).to(torch.float64).T)
        block.C.weight.copy_(torch.eye(m, dtype=torch.float64))
    return block


@pytest.mark.parametrize("m", [2, 3, 5])
def test_hand_set_weights_count_mod_m_exactly_at_any_length(m):
    """The paper's claim that the model can represent regular languages (here the cyclic group
    Z_m: running sums mod m, parity for m = 2), exactly, at length 3000, in both forms."""
    g = torch.Generator().manual_seed(m)
    tokens = torch.randint(0, m, (3, 3000), generator=g)
    u = torch.nn.functional.one_hot(tokens, m).to(torch.float64)
    block = counter(m)
    target = torch.nn.functional.one_hot(tokens.cumsum(1) % m, m).to(torch.float64)
    e0 = torch.nn.functional.one_hot(torch.tensor(0), m).to(torch.float64)
    for y in (block(u), block(u[:, :200], mode="reference")):
        assert torch.equal(y + e0, target[:, :y.shape[1]])


def test_the_constraint_undoes_a_scaled_up_counter():
    """The exact counter lives on the boundary of the constraint: scaling its blocks by 2
    (columns of p-norm 2, an unstable recurrence without the constraint) is undone by the
    normalization, so the states stay the counter's (to rounding of the p-norm)."""
    block = counter(3)
    with torch.no_grad():
        block.g.weight.mul_(2.0)
    tokens = torch.randint(0, 3, (2, 500), generator=torch.Generator().manual_seed(0))
    u = torch.nn.functional.one_hot(tokens, 3).to(torch.float64)
    y = block(u) + torch.nn.functional.one_hot(torch.tensor(0), 3).to(torch.float64)
    target = torch.nn.functional.one_hot(tokens.cumsum(1) % 3, 3).to(torch.float64)
    assert (y - target).abs().max() <= 1e-12


@pytest.mark.parametrize("L", [1, 2, 5, 16, 33])
def test_matrix_scan_equals_the_loop_with_gradients(L):
    g = torch.Generator().manual_seed(L)
    A = (torch.randn(2, L, 3, 4, 4, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    b = torch.randn(2, L, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    cot = torch.randn(2, L, 3, 4, generator=g, dtype=torch.float64)
    out = {}
    for f in (matrix_recurrence_loop, matrix_scan):
        h = f(A, b, h0)
        out[f] = (h, *torch.autograd.grad((h * cot).sum(), (A, b, h0)))
    for a, r in zip(out[matrix_scan], out[matrix_recurrence_loop]):
        assert rel_err(a, r) <= 1e-12


def test_matrix_scan_shape_errors():
    with pytest.raises(ShapeError, match=r"\(B, L, \.\.\., n, n\)"):
        matrix_scan(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 5))
    with pytest.raises(ShapeError, match="h0"):
        matrix_scan(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4), torch.zeros(2, 4))


@pytest.mark.parametrize("b", [1, 2, 6])
def test_contract_for_other_block_sizes(b):
    torch.manual_seed(b)
    block = BlockLRNN(6, block_size=b, dtype=torch.float64)
    check_forms_agree(block, 2, 9)
    check_step_matches_forward(block, 2, 9)
    check_causal(block, L=8)
    check_state_size(block)
    assert block.state_size == 6  # h b = d_model real numbers


def test_gradcheck():
    torch.manual_seed(2)
    block = BlockLRNN(4, block_size=2, dtype=torch.float64)
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    for mode in BlockLRNN.modes:
        assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = BlockLRNN(8, block_size=4, dtype=dtype)
    assert block(torch.randn(2, 5, 8, dtype=dtype)).dtype == dtype


def test_strict_options():
    with pytest.raises(ConfigError, match="multiple of block_size"):
        BlockLRNN(10, block_size=4)
    with pytest.raises(ConfigError, match="block_size"):
        BlockLRNN(8, block_size=0)
    with pytest.raises(ConfigError, match="p .* must be >= 1"):
        BlockLRNN(8, p=0.5)
