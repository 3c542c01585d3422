"""SLiCE (Walker et al. 2025): the fast Walsh-Hadamard transform against the Sylvester matrix
(orthogonal, symmetric, involutory), the Walsh-Hadamard step against its matrix, an exact
mod-m counter with hand-set block-diagonal weights, diagonal transitions commute where the
structured ones do not, the contract for every structure, options."""
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.blocks.mixers.slice_cde import STRUCTURES, SLiCE, fwht, hadamard_matrix
from layerlab.errors import ConfigError

from .contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

F64 = torch.float64


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_fwht_is_the_orthogonal_hadamard_matrix(n):
    H = hadamard_matrix(n)
    assert torch.allclose(H @ H.T, torch.eye(n, dtype=F64), atol=1e-14)  # orthogonal
    assert torch.equal(H, H.T)  # symmetric, so H H = I
    assert torch.equal(H.abs(), torch.full((n, n), 1 / math.sqrt(n), dtype=F64))  # entries +-1/sqrt(n)
    x = torch.randn(3, 5, n, dtype=F64)
    assert rel_err(fwht(x), x @ H.T) <= 1e-14
    assert rel_err(fwht(fwht(x)), x) <= 1e-14
    assert torch.allclose(fwht(x).norm(dim=-1), x.norm(dim=-1), rtol=1e-14)


def test_fwht_on_a_large_input_matches_rows_of_the_matrix():
    """The fast transform takes log2(n) stages of n additions (n log n work), not an n x n product:
    on n = 2^14 it finishes and agrees with a block check of the matrix on a few coordinates."""
    n = 1 << 14
    x = torch.randn(2, n, dtype=F64)
    y = fwht(x)
    rows = torch.tensor([0, 1, 777, n - 1])
    bits = lambda i: torch.tensor([bin(int(i) & j).count("1") % 2 for j in range(n)], dtype=F64)  # noqa: E731
    H_rows = torch.stack([(1 - 2 * bits(i)) for i in rows]) / math.sqrt(n)  # H_ij = (-1)^{popcount(i & j)}
    assert rel_err(y[:, rows], x @ H_rows.T) <= 1e-12


def test_walsh_hadamard_transition_is_identity_plus_h_diag():
    torch.manual_seed(0)
    block = SLiCE(5, structure="walsh_hadamard", dt=0.3, dtype=F64)
    assert block.d_state == 8
    x = torch.randn(4, 5, dtype=F64)
    dX = block.increments(x)
    a = dX @ torch.tanh(block.W)
    expected = torch.eye(8, dtype=F64) + hadamard_matrix(8) @ torch.diag_embed(a)
    assert rel_err(block.transition_blocks(dX)[:, 0], expected) <= 1e-14
    h = torch.randn(4, 8, dtype=F64)
    assert rel_err(block.apply_transition(dX, h), (expected @ h.unsqueeze(-1)).squeeze(-1)) <= 1e-14


@pytest.mark.parametrize("m", [2, 3, 5])
def test_block_diagonal_slice_counts_mod_m_exactly(m):
    """dt = 1, one block of size m, one-hot inputs: I + A(e_j) = P^j (A_time = 0, A_j = P^j - I) and
    B dX = e_j - e_0, so h_t = e_{s_t} - e_0 for the running sum s_t mod m, at length 2000."""
    block = SLiCE(m, structure="block", block_size=m, dt=1.0, dtype=F64)
    P = torch.roll(torch.eye(m, dtype=F64), 1, dims=0)
    with torch.no_grad():
        block.W.zero_()
        block.B.weight.zero_()
        for j in range(m):
            block.W[1 + j, 0] = torch.linalg.matrix_power(P, j) - torch.eye(m, dtype=F64)
            block.B.weight[:, 1 + j] = F.one_hot(torch.tensor(j), m).to(F64) - F.one_hot(torch.tensor(0), m).to(F64)
        block.C.weight.copy_(torch.eye(m, dtype=F64))
    tokens = torch.randint(0, m, (2, 2000), generator=torch.Generator().manual_seed(m))
    u = F.one_hot(tokens, m).to(F64)
    target = F.one_hot(tokens.cumsum(1) % m, m).to(F64) - F.one_hot(torch.tensor(0), m).to(F64)
    for y in (block(u), block(u[:, :100], mode="reference")):
        assert torch.equal(y, target[:, :y.shape[1]])


def test_only_the_diagonal_structure_commutes():
    """Diagonal transitions commute, so a diagonal SLiCE cannot tell g1 g2 from g2 g1 (no
    non-abelian state tracking); block, Walsh-Hadamard and dense transitions do not commute."""
    torch.manual_seed(1)
    x1, x2 = torch.randn(2, 6, dtype=F64)
    for structure in STRUCTURES:
        block = SLiCE(6, structure=structure, block_size=3, d_state=8 if structure == "walsh_hadamard" else 6,
                      dt=0.5, dtype=F64)
        W1, W2 = (torch.block_diag(*block.transition_blocks(block.increments(x))) for x in (x1, x2))
        gap = (W1 @ W2 - W2 @ W1).abs().max().item()
        assert (gap <= 1e-14) if structure == "diagonal" else (gap > 1e-3), structure


@pytest.mark.parametrize("structure", STRUCTURES)
def test_contract_for_every_structure(structure):
    torch.manual_seed(2)
    block = SLiCE(6, structure=structure, block_size=2, dt=0.5, dtype=F64)
    check_forms_agree(block, 2, 9)
    check_forms_agree(block, 1, 1)
    check_step_matches_forward(block, 2, 10)
    check_causal(block, L=8)
    check_state_size(block)
    assert block.state_size == (8 if structure == "walsh_hadamard" else 6)


def test_gradcheck():
    torch.manual_seed(3)
    for structure in STRUCTURES:
        block = SLiCE(3, structure=structure, block_size=3, dt=0.5, dtype=F64)
        x = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
        for mode in SLiCE.modes:
            assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,)), (structure, mode)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_preserved(dtype):
    for structure in STRUCTURES:
        block = SLiCE(8, structure=structure, dtype=dtype)
        assert block(torch.randn(2, 5, 8, dtype=dtype)).dtype == dtype
        block = SLiCE(8, structure=structure).to(dtype)  # nn.Module.to works (no method shadowed)
        assert block(torch.randn(2, 5, 8, dtype=dtype)).dtype == dtype


def test_strict_options():
    with pytest.raises(ConfigError, match="structure must be one of"):
        SLiCE(8, structure="sparse")
    with pytest.raises(ConfigError, match="power of 2"):
        SLiCE(8, structure="walsh_hadamard", d_state=12)
    with pytest.raises(ConfigError, match="multiple of block_size"):
        SLiCE(10, structure="block", block_size=4)
    with pytest.raises(ConfigError, match="dt"):
        SLiCE(8, dt=0.0)
    with pytest.raises(ConfigError, match="power of 2"):
        fwht(torch.zeros(3, 6))
