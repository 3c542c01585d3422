"""Fixed-Point RNN (Movahedi et al. 2025): the fixed point of the iterated diagonal scans equals
the dense linear RNN h_t = (I - M_t)^{-1} (Lambda_t h_{t-1} + B x_t); one iteration is the
diagonal RNN; more iterations approach the dense one; the mixer is a contraction; options."""
import pytest
import torch

from layerlab.blocks.mixers.fixed_point_rnn import FixedPointRNN
from layerlab.kernels.linear_recurrence import linear_recurrence_loop
from layerlab.errors import ConfigError

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

F64 = torch.float64


def dense_rnn(block: FixedPointRNN, x: torch.Tensor) -> torch.Tensor:
    """h_t = A_t h_{t-1} + (I - M_t)^{-1} B x_t with A_t = (I - M_t)^{-1} Lambda_t, written out
    with explicit H x H matrices, then y_t = C h_t."""
    A = block.dense_transition(x)  # (B, L, H, H)
    eye = torch.eye(block.d_state, dtype=F64)
    u = torch.linalg.solve(eye - block.mixer_matrix(x), block.B(x).unsqueeze(-1)).squeeze(-1)
    h = torch.zeros(x.shape[0], block.d_state, dtype=F64)
    hs = []
    for t in range(x.shape[1]):
        h = (A[:, t] @ h.unsqueeze(-1)).squeeze(-1) + u[:, t]
        hs.append(h)
    return block.C(torch.stack(hs, 1))


def test_the_fixed_point_is_the_dense_linear_rnn():
    torch.manual_seed(0)
    block = FixedPointRNN(6, d_state=5, rank=3, gamma=0.95, max_iterations=2000, dtype=F64)
    x = torch.randn(2, 40, 6, dtype=F64) * 2
    y = block(x)
    assert rel_err(y, dense_rnn(block, x)) <= 1e-10
    # and the transition really mixes channels: A_t is not diagonal
    A = block.dense_transition(x)
    off = A - torch.diag_embed(torch.diagonal(A, dim1=-2, dim2=-1))
    assert off.abs().max() > 1e-2


def test_one_iteration_is_the_diagonal_rnn():
    torch.manual_seed(1)
    block = FixedPointRNN(6, d_state=4, iterations=1, dtype=F64)
    x = torch.randn(2, 13, 6, dtype=F64)
    lam, _, _, _, bx = block.pieces(x)
    assert rel_err(block(x), block.C(linear_recurrence_loop(lam, bx))) <= 1e-12


def test_more_iterations_interpolate_towards_the_dense_rnn():
    torch.manual_seed(2)
    x = torch.randn(2, 24, 6, dtype=F64) * 2
    exact = FixedPointRNN(6, d_state=5, rank=2, dtype=F64)
    target = dense_rnn(exact, x)
    errors = []
    for K in (1, 2, 4, 8, 16, 64, 256):
        block = FixedPointRNN(6, d_state=5, rank=2, iterations=K, dtype=F64)
        block.load_state_dict(exact.state_dict())
        errors.append(rel_err(block(x), target))
    assert errors[0] > 1e-2  # the diagonal RNN is not the dense one
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] <= 1e-8


def test_mixer_is_a_contraction():
    torch.manual_seed(3)
    block = FixedPointRNN(8, rank=3, gamma=0.7, dtype=F64)
    with torch.no_grad():
        block.beta.weight.mul_(50.0)  # saturate the tanh: |beta_j| -> gamma / r
    x = torch.randn(200, 8, dtype=F64)
    M = block.mixer_matrix(x)
    sv = torch.linalg.svdvals(M)[:, :3]  # the r = 3 nonzero singular values are |beta_j|
    beta = block.pieces(x)[3].abs().sort(-1, descending=True).values
    assert torch.allclose(sv, beta, atol=1e-12)
    assert sv.max() <= 0.7 + 1e-12 and sv.max() > 0.69


@pytest.mark.parametrize("iterations", [None, 1, 3])
def test_contract_with_iterations(iterations):
    torch.manual_seed(4)
    block = FixedPointRNN(6, d_state=4, rank=2, iterations=iterations, dtype=F64)
    for B, L in SHAPES:
        check_forms_agree(block, B, L)
    check_step_matches_forward(block, 2, 11)
    check_causal(block, L=9)
    check_state_size(block)
    assert block.state_size == 4 * (1 if iterations is None else iterations)


def test_negative_eigenvalue_range():
    block = FixedPointRNN(4, negative_eigenvalues=False, dtype=F64)
    lam = block.pieces(torch.randn(100, 4, dtype=F64) * 5)[0]
    assert lam.min() > 0
    block = FixedPointRNN(4, negative_eigenvalues=True, dtype=F64)
    with torch.no_grad():
        block.lam.weight.mul_(3.0)
    lam = block.pieces(torch.randn(100, 4, dtype=F64) * 2)[0]
    assert lam.min() < -0.5 and lam.abs().max() < 1


def test_gradcheck():
    torch.manual_seed(5)
    block = FixedPointRNN(3, d_state=3, rank=1, dtype=F64)
    x = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
    for mode in FixedPointRNN.modes:
        assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = FixedPointRNN(8, dtype=dtype)
    assert block(torch.randn(2, 5, 8, dtype=dtype)).dtype == dtype


def test_strict_options():
    with pytest.raises(ConfigError, match="gamma"):
        FixedPointRNN(8, gamma=1.0)
    with pytest.raises(ConfigError, match="iterations"):
        FixedPointRNN(8, iterations=0)
    with pytest.raises(ConfigError, match="rank"):
        FixedPointRNN(8, rank=0)
    with pytest.raises(ConfigError, match="rank .* must be <= d_state"):
        FixedPointRNN(8, d_state=2, rank=3)
    with pytest.raises(ConfigError, match="tol"):
        FixedPointRNN(8, tol=0.0)
