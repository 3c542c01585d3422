"""Bilinear RNN (Ebrahimi & Memisevic 2025): finite automata run exactly with hand-set weights
(the S3 word problem with the full tensor, counting mod m with rotation blocks, parity with the
real diagonal), the hierarchy (each structure is a special case of the one above it), the
diagonal case as a diagonal gated RNN, scale invariance, options (the contract runs the default)."""
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.blocks.mixers.bilinear_rnn import STRUCTURES, BilinearRNN
from layerlab.blocks.mixers.scan import linear_recurrence_loop
from layerlab.errors import ConfigError
from layerlab.tasks.state_tracking import permutation_group

from .contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

F64 = torch.float64


def one_hot(tokens, n):
    return F.one_hot(tokens, n).to(F64)


def test_full_bilinear_runs_the_s3_word_problem_exactly():
    """A_{e_g} = the permutation matrix of g acting on the 6 group elements (the regular
    representation), h_0 = e_identity: h_t is the one-hot of g_t o ... o g_1, at length 2000."""
    _, table = permutation_group("S3")
    n = table.shape[0]
    block = BilinearRNN(n, structure="full", chunk_size=16, dtype=F64)
    with torch.no_grad():
        block.W.zero_()
        for g in range(n):
            for s in range(n):
                block.W[0, table[s, g], s, g] = 1.0
        block.h0.copy_(one_hot(torch.tensor(0), n))
        block.C.weight.copy_(torch.eye(n, dtype=F64) / math.sqrt(n))  # rms(e_s) = 1/sqrt(n)
    tokens = torch.randint(0, n, (2, 2000), generator=torch.Generator().manual_seed(0))
    state = torch.zeros(2, dtype=torch.long)
    target = torch.empty_like(tokens)
    for t in range(tokens.shape[1]):
        state = table[state, tokens[:, t]]
        target[:, t] = state
    u = one_hot(tokens, n)
    for y in (block(u), block(u[:, :150], mode="reference")):
        assert (y - one_hot(target[:, :y.shape[1]], n)).abs().max() <= 1e-12


@pytest.mark.parametrize("m", [3, 5])
def test_rotation_blocks_count_mod_m(m):
    """One 2 x 2 rotation block, lambda(e_j) = exp(2 pi i j / m): the state's angle is 2 pi s / m
    (s the running sum); reading out against the m directions picks s at length 3000."""
    block = BilinearRNN(m, structure="rotation", d_state=2, dtype=F64)
    angles = 2 * math.pi * torch.arange(m, dtype=F64) / m
    with torch.no_grad():
        block.W[0, 0].copy_(torch.cos(angles))
        block.W[0, 1].copy_(torch.sin(angles))
        block.h0.copy_(torch.tensor([1.0, 0.0], dtype=F64))
        block.C.weight.copy_(torch.stack((torch.cos(angles), torch.sin(angles)), 1))
    tokens = torch.randint(0, m, (2, 3000), generator=torch.Generator().manual_seed(m))
    y = block(one_hot(tokens, m))
    assert torch.equal(y.argmax(-1), tokens.cumsum(1) % m)
    # the margin stays that of exact arithmetic: no drift of the angle over 3000 steps
    assert (y.max(-1).values - math.sqrt(2)).abs().max() <= 1e-9


def test_real_diagonal_solves_parity_and_is_a_diagonal_gated_rnn():
    """diag(W x) with W e_0 = 1, W e_1 = -1 flips the sign on every 1: parity; and in general the
    diagonal structure is h_t = a_t (.) h_{t-1} with a_t = W x_t (layerlab's diagonal recurrence)."""
    block = BilinearRNN(2, structure="diagonal", d_state=1, dtype=F64)
    with torch.no_grad():
        block.W.copy_(torch.tensor([1.0, -1.0], dtype=F64).view(1, 1, 1, 2))
        block.h0.fill_(1.0)
        block.C.weight.copy_(torch.tensor([[1.0], [-1.0]], dtype=F64))  # parity 1 <-> h = -1
    tokens = torch.randint(0, 2, (3, 1000), generator=torch.Generator().manual_seed(1))
    assert torch.equal(block(one_hot(tokens, 2)).argmax(-1), tokens.cumsum(1) % 2)

    torch.manual_seed(2)
    block = BilinearRNN(6, structure="diagonal", d_state=5, dtype=F64)
    x = torch.randn(2, 9, 6, dtype=F64)
    a = x @ block.W[:, 0, 0, :].T  # (B, L, H)
    h = linear_recurrence_loop(a, torch.zeros_like(a), block.h0.expand(2, -1))
    expected = block.C(h / h.square().mean(-1, keepdim=True).sqrt())
    assert rel_err(block(x), expected) <= 1e-12


def copy_into(target: BilinearRNN, source: BilinearRNN) -> None:
    with torch.no_grad():
        target.h0.copy_(source.h0)
        target.C.weight.copy_(source.C.weight)


def test_hierarchy_each_structure_is_a_special_case():
    """diagonal = block (b = 1) = factorized (U = Z = I, V = W) ; rotation = block (b = 2) with the
    rotation pattern; block = full with a block-diagonal tensor."""
    torch.manual_seed(3)
    D, H = 5, 4
    x = torch.randn(2, 11, D, dtype=F64)
    diag = BilinearRNN(D, structure="diagonal", d_state=H, dtype=F64)
    b1 = BilinearRNN(D, structure="block", d_state=H, block_size=1, dtype=F64)
    fact = BilinearRNN(D, structure="factorized", d_state=H, dtype=F64)
    for m in (b1, fact):
        copy_into(m, diag)
    with torch.no_grad():
        b1.W.copy_(diag.W)
        fact.U.copy_(torch.eye(H, dtype=F64))
        fact.Z.copy_(torch.eye(H, dtype=F64))
        fact.V.copy_(diag.W[:, 0, 0, :])
    y = diag(x)
    assert rel_err(b1(x), y) <= 1e-12 and rel_err(fact(x), y) <= 1e-12

    rot = BilinearRNN(D, structure="rotation", d_state=H, dtype=F64)
    b2 = BilinearRNN(D, structure="block", d_state=H, block_size=2, dtype=F64)
    full = BilinearRNN(D, structure="full", d_state=H, dtype=F64)
    for m in (b2, full):
        copy_into(m, rot)
    with torch.no_grad():
        a, c = rot.W[:, 0], rot.W[:, 1]  # (n, D)
        b2.W.copy_(torch.stack((torch.stack((a, -c), 1), torch.stack((c, a), 1)), 1))
        full.W.zero_()
        for i in range(H // 2):
            full.W[0, 2 * i:2 * i + 2, 2 * i:2 * i + 2] = b2.W[i]
    y = rot(x)
    assert rel_err(b2(x), y) <= 1e-12 and rel_err(full(x), y) <= 1e-12


@pytest.mark.parametrize("structure", STRUCTURES)
def test_pure_bilinear_is_scale_invariant_and_the_affine_one_is_not(structure):
    torch.manual_seed(4)
    x = torch.randn(2, 9, 4, dtype=F64)
    block = BilinearRNN(4, structure=structure, block_size=2, dtype=F64)
    y = block(x)
    with torch.no_grad():
        block.h0.mul_(7.0)
    assert rel_err(block(x), y) <= 1e-13
    affine = BilinearRNN(4, structure=structure, block_size=2, additive=True, dtype=F64)
    y = affine(x)
    with torch.no_grad():
        affine.h0.mul_(7.0)
    assert rel_err(affine(x), y) > 1e-3


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("additive", [False, True])
def test_contract_for_every_structure(structure, additive):
    torch.manual_seed(5)
    block = BilinearRNN(6, structure=structure, d_state=6, rank=3, block_size=3, additive=additive,
                        chunk_size=4, dtype=F64)
    check_forms_agree(block, 2, 9)
    check_step_matches_forward(block, 2, 10)
    check_causal(block, L=8)
    check_state_size(block)
    assert block.state_size == 6


def test_long_sequences_stay_finite_and_agree():
    """Transitions with spectral radius about 3: 3^500 overflows float64 without the chunk-wise
    renormalization; with it, the scan equals the step-normalized reference."""
    torch.manual_seed(6)
    block = BilinearRNN(4, structure="full", chunk_size=16, dtype=F64)
    with torch.no_grad():
        block.W.mul_(3.0)
    x = torch.randn(1, 700, 4, dtype=F64)
    y = block(x)
    assert torch.isfinite(y).all()
    assert rel_err(y, block(x, mode="reference")) <= 1e-10


def test_gradcheck():
    torch.manual_seed(7)
    block = BilinearRNN(3, structure="factorized", rank=2, chunk_size=2, dtype=F64)
    x = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    for mode in BilinearRNN.modes:
        assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = BilinearRNN(8, dtype=dtype)
    assert block(torch.randn(2, 5, 8, dtype=dtype)).dtype == dtype


def test_strict_options():
    with pytest.raises(ConfigError, match="structure must be one of"):
        BilinearRNN(8, structure="dense")
    with pytest.raises(ConfigError, match="even d_state"):
        BilinearRNN(8, structure="rotation", d_state=5)
    with pytest.raises(ConfigError, match="set block_size"):
        BilinearRNN(8, structure="block", block_size=3)
    with pytest.raises(ConfigError, match="rank"):
        BilinearRNN(8, structure="factorized", rank=0)
    with pytest.raises(ConfigError, match="chunk_size"):
        BilinearRNN(8, chunk_size=0)
