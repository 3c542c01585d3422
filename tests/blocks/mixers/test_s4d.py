"""S4D: FFT convolution vs the discretized recurrence, ZOH vs the matrix exponential, S4D-Lin/Inv
initialization, contracts."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.mixers.s4d import S4D
from layerlab.errors import ConfigError, ShapeError

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err


@pytest.mark.parametrize("mixing", ["glu", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fft_matches_recurrence(shape, dtype, mixing):
    """Without the GLU, and with fast-decaying, fast-turning modes (the shared contract runs the
    default block)."""
    torch.manual_seed(0)
    block = S4D(8, d_state=6, mixing=mixing, dtype=dtype)
    if mixing == "none":
        check_forms_agree(block, *shape)
    with torch.no_grad():  # and with fast-decaying, fast-turning modes (steps up to 1)
        block.log_dt.uniform_(math.log(0.1), 0.0)
    check_forms_agree(block, *shape)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_step_causality_state_size(init):
    torch.manual_seed(1)
    block = S4D(8, d_state=4, init=init, dtype=torch.float64)
    check_step_matches_forward(block, 2, 13)
    check_causal(block)
    check_state_size(block)
    assert block.state_size == 8 * 4  # H channels x N/2 complex modes x 2


@pytest.mark.parametrize("mode", S4D.modes)
def test_gradcheck(mode):
    torch.manual_seed(2)
    block = S4D(3, d_state=4, dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def test_zoh_kernel_matches_dense_matrix_exponential():
    """One channel as a dense system: the N/2 modes and their conjugates, B = 1, moved to a random
    basis (A_dense = V diag(A) V^-1). Zero-order hold of the dense system by the matrix exponential
    of the block matrix [[A, B], [0, 0]] (= [[Abar, Bbar], [0, 1]] after scaling by Delta), then
    K_l = C Abar^l Bbar, must equal S4D's closed-form Vandermonde kernel (float64, 1e-10)."""
    torch.manual_seed(3)
    block = S4D(2, d_state=6, init="inv", dtype=torch.float64)
    with torch.no_grad():
        block.log_dt.fill_(math.log(0.07))
        block.A_re_log.add_(torch.randn_like(block.A_re_log) * 0.3)
    L, h = 12, 1
    A, C, dt = block.continuous(torch.complex128)
    a = torch.cat((A[h], A[h].conj())).detach()
    c = torch.cat((C[h], C[h].conj())).detach()
    N = a.numel()
    V = torch.randn(N, N, dtype=torch.complex128)
    Vinv = torch.linalg.inv(V)
    A_dense, B_dense, C_dense = V @ torch.diag(a) @ Vinv, V @ torch.ones(N, 1, dtype=torch.complex128), c @ Vinv
    M = torch.zeros(N + 1, N + 1, dtype=torch.complex128)
    M[:N, :N], M[:N, N:] = A_dense, B_dense
    E = torch.linalg.matrix_exp(dt[h].item() * M)
    Abar, Bbar = E[:N, :N], E[:N, N:]
    dense_K, v = [], Bbar
    for _ in range(L):
        dense_K.append((C_dense @ v).squeeze())
        v = Abar @ v
    dense_K = torch.stack(dense_K)
    assert dense_K.imag.abs().max() < 1e-10  # conjugate pairs: a real system
    K = block.kernel(L, torch.float64)[h].detach()
    assert rel_err(K, dense_K.real) <= 1e-10
    # the recurrence's Abar are the eigenvalues of the dense exp(Delta A) (each matched to 1e-10)
    Abar_d, Bbar_d, _ = block.discretize(torch.complex128)
    eig = torch.linalg.eigvals(Abar)
    for lam in torch.cat((Abar_d[h], Abar_d[h].conj())).detach():
        assert (eig - lam).abs().min() <= 1e-10
    # the ZOH formula Bbar = (exp(Delta A) - 1)/A against its series Delta sum_k (Delta A)^k/(k+1)!
    dtA = dt[h] * A[h]
    series = dt[h] * sum(dtA ** k / float(math.factorial(k + 1)) for k in range(30))
    assert rel_err(Bbar_d[h].detach(), series.detach()) <= 1e-12


def test_kernel_is_the_impulse_response():
    """y = K * u + D u: a unit impulse in channel h returns K[h] (+ D at lag 0) without mixing."""
    torch.manual_seed(4)
    block = S4D(3, d_state=8, mixing="none", dtype=torch.float64)
    L = 20
    u = torch.zeros(1, L, 3, dtype=torch.float64)
    u[0, 0, 2] = 1.0
    for mode in S4D.modes:
        y = block(u, mode=mode)[0, :, 2].detach()
        K = block.kernel(L, torch.float64)[2].detach()
        K[0] += block.D[2].detach()
        assert rel_err(y, K) <= 1e-12


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_initialization_values(init):
    N, H = 16, 512
    block = S4D(H, d_state=N, init=init, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    A, C, dt = block.continuous(torch.complex128)
    n = torch.arange(N // 2, dtype=torch.float64)
    expected = math.pi * n if init == "lin" else (N / math.pi) * (N / (2 * n + 1) - 1)
    assert torch.allclose(A.real, torch.full_like(A.real, -0.5), rtol=0, atol=1e-15)
    assert torch.allclose(A.imag, expected.expand(H, -1), rtol=1e-14, atol=1e-12)
    if init == "lin":
        assert A.imag[0, 3].item() == pytest.approx(3 * math.pi)
    else:
        assert A.imag[0, 0].item() == pytest.approx((N / math.pi) * (N - 1))
    # Delta log-uniform on [1e-3, 1e-1]: mean of log Delta at the midpoint (512 draws, SE 0.06)
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1
    assert abs(dt.log().mean().item() - math.log(1e-2)) < 0.25
    # C complex standard normal: E|C|^2 = 1 (4096 draws, SE ~ 1.6%); D standard normal
    assert abs((C.abs() ** 2).mean().item() - 1) < 0.06
    assert abs(block.D.std().item() - 1) < 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = S4D(8, d_state=4, dtype=dtype)
    y = block(torch.randn(2, 5, 8, dtype=dtype))
    assert y.dtype == dtype and y.shape == (2, 5, 8) and torch.isfinite(y.float()).all()


def test_generator_controls_init_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a = S4D(8, d_state=4, generator=torch.Generator().manual_seed(7))
    b = S4D(8, d_state=4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("options, match", [
    ({"d_state": 5}, "even"),
    ({"d_state": 0}, "even"),
    ({"init": "legs"}, "init"),
    ({"dt_min": 0.0}, "dt_min"),
    ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min <= dt_max"),
    ({"mixing": "mlp"}, "mixing"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        S4D(8, **options)


def test_registered_and_strict():
    block = layerlab.build("mixer", "s4d", 8, d_state=4)
    assert isinstance(block, S4D) and block.paper.arxiv == "2206.11893"
    with pytest.raises(ConfigError, match="unknown option"):
        layerlab.build("mixer", "s4d", 8, n_heads=2)
    with pytest.raises(ShapeError):
        block(torch.randn(2, 3, 6))
