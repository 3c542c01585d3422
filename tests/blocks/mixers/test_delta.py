"""Delta-rule mixers (DeltaNet, Gated DeltaNet, DeltaProduct): forms agree, step == forward,
causality, measured state, the delta rule's overwrite, DeltaProduct(n_h = 1) == DeltaNet, the
transition matrix and its eigenvalues with and without negative eigenvalues, gates, options."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.mixers.delta import DeltaNet, DeltaProduct, GatedDeltaNet
from layerlab.errors import ConfigError, ShapeError
from layerlab.registry import get

from .contract import SHAPES, TOL, _run, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

F64 = torch.float64
CLASSES = {"deltanet": DeltaNet, "gated_deltanet": GatedDeltaNet, "deltaproduct": DeltaProduct}
VARIANTS = [
    ("deltanet", {}),
    ("deltanet", {"negative_eigenvalues": True}),
    ("gated_deltanet", {}),
    ("gated_deltanet", {"negative_eigenvalues": True, "conv_size": 2}),
    ("deltaproduct", {}),
    ("deltaproduct", {"gated": True, "negative_eigenvalues": True, "n_householder": 3}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in VARIANTS]
# the shared contract (tests/blocks/test_mixer_contract.py) runs each mixer with its defaults
OPTION_VARIANTS = [(v, i) for v, i in zip(VARIANTS, IDS) if v[1]]


def make(name, d_model=16, *, dtype=F64, seed=0, **options):
    torch.manual_seed(seed)
    return layerlab.build("mixer", name, d_model, dtype=dtype, **{"n_heads": 2, **options})


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("variant", [v for v, _ in OPTION_VARIANTS], ids=[i for _, i in OPTION_VARIANTS])
def test_chunk_matches_reference(variant, dtype):
    """Outputs, input and parameter gradients over contract.SHAPES: rel err <= 1e-10 (float64),
    1e-4 (float32). Chunk 16: lengths 33 and 70 cross chunk boundaries, 7 stays in one chunk."""
    name, options = variant
    block = make(name, dtype=dtype, chunk_size=16, **options)
    for i, (B, L) in enumerate(SHAPES):
        if L == 1 and block.gated:
            check_forms_agree_at_length_one(block, B, seed=i)
        else:
            check_forms_agree(block, B, L, seed=i)


def check_forms_agree_at_length_one(block, B, *, seed):
    """At L = 1 the decay multiplies the zero initial state, so the true gradient of A_log and
    dt_bias is exactly 0; the chunk form may return roundoff there (seen: ~1e-11 in float32,
    ~1e-17 in float64, from the cancelling exp(gamma_r - gamma_i) terms of a token's sub-steps),
    and a relative error against 0 is meaningless. Same check as contract.check_forms_agree
    (tolerance contract.TOL), but a parameter gradient's error is measured relative to
    max(its norm, the norm of all parameter gradients)."""
    dtype = next(block.parameters()).dtype
    tol = TOL[dtype]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, block.d_model, generator=gen, dtype=dtype)
    cot = torch.randn(B, 1, block.d_model, generator=gen, dtype=dtype)
    y_r, gx_r, gp_r = _run(block, x, cot, "reference")
    y_f, gx_f, gp_f = _run(block, x, cot, "chunk")
    assert rel_err(y_f, y_r) <= tol and rel_err(gx_f, gx_r) <= tol
    scale = torch.stack([b.norm() for b in gp_r]).norm()
    for (name, _), a, b in zip(block.named_parameters(), gp_f, gp_r):
        assert (a - b).norm() <= tol * max(b.norm(), scale), name
    assert torch.count_nonzero(gp_r[[n for n, _ in block.named_parameters()].index("A_log")]) == 0


@pytest.mark.parametrize("variant", VARIANTS + [("deltanet", {"conv_size": 0}), ("deltaproduct", {"conv_size": 1})],
                         ids=IDS + ["deltanet-conv_size=0", "deltaproduct-conv_size=1"])
def test_step_causal_state_size(variant):
    name, options = variant
    block = make(name, 12, n_heads=3, chunk_size=8, **options)
    check_step_matches_forward(block, 2, 19)  # explicit step vs chunked kernel, float64, 1e-10
    check_causal(block)
    check_state_size(block)
    H, d, n = 3, 4, block.n_householder
    K = block.conv_size
    conv_buffer = max(K - 1, 0) * H * d * (1 + 2 * n)  # last K - 1 projected [q, k_1..n, v_1..n]
    assert block.state_size == H * d * d + conv_buffer


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_gradcheck(variant):
    name, options = variant
    block = make(name, 4, chunk_size=2, **{"conv_size": 2, **options})
    x = torch.randn(1, 5, 4, dtype=F64, requires_grad=True, generator=torch.Generator().manual_seed(1))
    for mode in block.modes:
        assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


def test_beta_one_overwrites_the_value_stored_at_a_key():
    """The delta rule with beta = 1 replaces what is stored at key k: after writing (k, v_a) then
    (k, v_b), reading at k returns v_b, not a mix (linear attention would return v_a + v_b).
    beta = 1 exactly: negative_eigenvalues (beta = 2 sigmoid) with w_beta = 0. Keys and queries
    read only x[:4], values all of x, so x_a = [c, r_a] and x_b = [c, r_b] share key, not value."""
    block = make("deltanet", 8, n_heads=1, conv_size=0, negative_eigenvalues=True)
    with torch.no_grad():
        block.b_proj.weight.zero_()
        block.k_proj.weight[:, 4:] = 0
        block.q_proj.weight.copy_(block.k_proj.weight)
    g = torch.Generator().manual_seed(0)
    c, r_a, r_b = (2 * torch.randn(1, 4, generator=g, dtype=F64) for _ in range(3))
    x = torch.stack([torch.cat([c, r_a], -1), torch.cat([c, r_b], -1)], dim=1)  # (1, 2, 8)
    q, k, v, beta, _ = block.recurrence_inputs(x)
    assert torch.equal(beta, torch.ones_like(beta))
    assert torch.allclose(k[:, :, 0], k[:, :, 1], rtol=0, atol=1e-15) and rel_err(v[:, :, 0], v[:, :, 1]) > 0.1
    with torch.no_grad():
        state = block.init_state(1)
        for t in range(2):
            _, state = block.step(x[:, t], state)
    M = state[0][0, 0]  # (d_k, d_v)
    read = M.T @ k[0, 0, 1, 0]
    # |k|^2 = 1 - O(1e-6) (the L2 normalization's eps): v_a survives with weight ~1e-6
    assert rel_err(read, v[0, 0, 1, 0]) <= 1e-5
    assert rel_err(read, v[0, 0, 0, 0]) > 0.1
    # at the module's output: the sequence (x_a, x_b) reads like (x_b) alone
    with torch.no_grad():
        assert rel_err(block(x)[:, 1], block(x[:, 1:])[:, 0]) <= 1e-5
        half = make("deltanet", 8, n_heads=1, conv_size=0)  # beta = sigmoid(0) = 1/2: a mix
        half.load_state_dict(block.state_dict())
        assert rel_err(half(x)[:, 1], half(x[:, 1:])[:, 0]) > 1e-2


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("negative", [False, True])
def test_deltaproduct_with_one_householder_is_deltanet(gated, negative):
    """n_h = 1 with the same weights: DeltaProduct == DeltaNet (gated: == Gated DeltaNet), in every
    mode and in step (float64, 1e-12); the DeltaProduct kernel runs, not the delta-rule one."""
    dp = make("deltaproduct", n_householder=1, gated=gated, negative_eigenvalues=negative, chunk_size=8)
    other = make("gated_deltanet" if gated else "deltanet", seed=1, negative_eigenvalues=negative, chunk_size=8)
    x = torch.randn(2, 21, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel_err(other(x), dp(x)) > 1e-2  # different weights: different functions
        other.load_state_dict(dp.state_dict())  # strict: same names and shapes
        for mode in dp.modes:
            assert rel_err(other(x, mode=mode), dp(x, mode=mode)) <= 1e-12
        s1, s2 = dp.init_state(2), other.init_state(2)
        y1, s1 = dp.step(x[:, 0], s1)
        y2, s2 = other.step(x[:, 0], s2)
        assert rel_err(y2, y1) <= 1e-12 and all(torch.equal(a, b) for a, b in zip(s1, s2))


def transition(block, x):
    """The explicit state transition A_t of the last token of x (B, L, D), from the module's own
    step: M_t = A_t M_{t-1} + B_t, so A_t e_i is M_t(M_{t-1} = e_i e_1^T) - M_t(0), column 1.
    Returns (B, H, d_k, d_k); the earlier tokens only fill the convolution buffer."""
    B, L, _ = x.shape
    with torch.no_grad():
        state = block.init_state(B)
        for t in range(L - 1):
            _, state = block.step(x[:, t], state)
        M, *rest = state
        zero = torch.zeros_like(M)
        _, (M0, *_) = block.step(x[:, -1], (zero, *rest))
        cols = []
        for i in range(M.shape[-2]):
            E = zero.clone()
            E[..., i, 0] = 1.0
            _, (Mi, *_) = block.step(x[:, -1], (E, *rest))
            cols.append((Mi - M0)[..., :, 0])
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_transition_is_the_papers(variant):
    """A_t = alpha_t (I - b_{t,n} k_{t,n} k_{t,n}^T) ... (I - b_{t,1} k_{t,1} k_{t,1}^T) built from
    the recurrence's inputs equals the transition measured from step (float64, 1e-12)."""
    name, options = variant
    block = make(name, 12, n_heads=3, **options)
    x = torch.randn(4, 3, 12, dtype=F64, generator=torch.Generator().manual_seed(3))
    _, k, _, beta, g = block.recurrence_inputs(x)
    k, beta = k[:, :, -1], beta[:, :, -1]  # (B, H, n_h, d), (B, H, n_h)
    eye = torch.eye(k.shape[-1], dtype=F64)
    A = eye.expand(*k.shape[:2], -1, -1)
    for j in range(k.shape[2]):
        A = (eye - beta[:, :, j, None, None] * k[:, :, j, :, None] * k[:, :, j, None, :]) @ A
    if g is not None:
        A = torch.exp(g[:, :, -1])[..., None, None] * A
    assert rel_err(transition(block, x), A) <= 1e-12


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "deltaproduct"])
def test_negative_eigenvalues(name):
    """Without the option beta in (0, 1) and every eigenvalue of a token's transition is real in
    [0, 1]; with it beta exceeds 1 for some token and some eigenvalue is negative (real part
    < 0 for DeltaProduct's products, which may rotate). DeltaProduct at its default n_h = 2."""
    x = torch.randn(64, 3, 12, dtype=F64, generator=torch.Generator().manual_seed(4))
    for negative in (False, True):
        block = make(name, 12, n_heads=3, negative_eigenvalues=negative)
        beta = block.recurrence_inputs(x)[3]
        eig = torch.linalg.eigvals(transition(block, x))
        if not negative:
            assert beta.min() > 0 and beta.max() < 1
            assert eig.imag.abs().max() <= 1e-9
            assert eig.real.min() >= -1e-12 and eig.real.max() <= 1 + 1e-12
        else:
            assert beta.min() > 0 and beta.max() < 2 and beta.max() > 1
            assert eig.real.min() < -0.1
            assert eig.abs().max() <= 1 + 1e-12  # still stable: |lambda| <= 1


def test_gated_decay_and_init():
    """alpha_t = exp(g_t) in (0, 1); init: A = exp(A_log) in (0, 16], softplus(dt_bias) in
    [1e-4, 1e-1] (log-uniform from 1e-3, floor 1e-4), spread over the range."""
    block = make("gated_deltanet", 256, n_heads=64, dtype=torch.float32)
    A = block.A_log.exp()
    dt = F.softplus(block.dt_bias)
    assert A.min() > 0 and A.max() <= 16 + 1e-4 and A.max() / A.min() > 4
    assert dt.min() >= 1e-4 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4) and dt.max() / dt.min() > 10
    x = torch.randn(2, 7, 256)
    g = block.recurrence_inputs(x)[4]
    assert g.shape == (2, 64, 7)
    assert (g < 0).all() and (torch.exp(g) > 0).all()
    with torch.no_grad():  # a smaller A decays less: g scales with exp(A_log)
        block.A_log -= 1.0
    assert torch.allclose(block.recurrence_inputs(x)[4], g / torch.e, rtol=1e-5)


def test_output_norm_per_head_and_gate():
    """The heads' outputs are RMS-normalized per head (gain 1 at init): with W_o = I every head's
    slice of the output has root mean square 1 (up to norm_eps). Gated DeltaNet multiplies by
    SiLU(W_g x) before W_o: zeroing W_g zeroes the output; DeltaNet has no gate."""
    x = torch.randn(2, 6, 16, dtype=F64, generator=torch.Generator().manual_seed(7))
    for name in ("deltanet", "deltaproduct"):
        block = make(name, norm_eps=0.0)
        assert not hasattr(block, "g_proj") and not hasattr(block, "A_log")
        with torch.no_grad():
            block.o_proj.weight.copy_(torch.eye(16))
            rms = block(x).view(2, 6, 2, 8).square().mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), rtol=0, atol=1e-12)
    gd = make("gated_deltanet")
    with torch.no_grad():
        assert gd(x).abs().max() > 1e-3
        gd.g_proj.weight.zero_()
        assert gd(x).abs().max() == 0


def test_deltanet_init():
    """Projections normal with std d_model^(-1/2), RMSNorm gain 1, beta spread around 1/2."""
    block = make("deltanet", 256, n_heads=4, dtype=torch.float32)
    for lin in (block.q_proj, block.k_proj, block.v_proj, block.o_proj):
        assert abs(lin.weight.std().item() * 16 - 1) < 0.02  # n >= 65536: SE ~ 0.3%
    assert torch.equal(block.o_norm.weight, torch.ones(64))
    beta = block.recurrence_inputs(torch.randn(8, 16, 256))[3]
    assert abs(beta.mean().item() - 0.5) < 0.05 and beta.std() > 0.1


@pytest.mark.parametrize("name, options", [("gated_deltanet", {}), ("deltaproduct", {"gated": True})])
def test_A_is_uniform_on_zero_to_sixteen_as_in_the_authors_release(name, options):
    """A ~ U(0, 16) (flash-linear-attention's GatedDeltaNet; Mamba-2 draws [1, 16]): of 512 heads
    about 1/16 lie below 1 (none would with Mamba-2's range: P = (15/16)^512 ~ 4e-15 under
    U(0, 16)); mean 8 (SE 0.2); quartiles at 4 and 12 (SE ~ 0.02 in the fraction)."""
    torch.manual_seed(0)
    block = layerlab.build("mixer", name, 512, n_heads=512, **options)
    A = block.A_log.detach().double().exp()
    assert A.min() > 0 and A.max() <= 16 * (1 + 1e-6) and torch.isfinite(block.A_log).all()
    assert 0.02 < (A < 1).double().mean().item() < 0.12
    assert abs(A.mean().item() - 8) < 1.0
    assert abs((A < 4).double().mean().item() - 0.25) < 0.07
    assert abs((A < 12).double().mean().item() - 0.75) < 0.07


def test_no_weight_decay_on_the_decay_parameters_only_when_gated():
    assert make("gated_deltanet").no_weight_decay == ("A_log", "dt_bias")
    assert make("deltaproduct", gated=True).no_weight_decay == ("A_log", "dt_bias")
    assert make("deltaproduct").no_weight_decay == () and make("deltanet").no_weight_decay == ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "deltaproduct"])
def test_dtype_preserved(name, dtype):
    block = make(name, dtype=dtype)
    x = torch.randn(2, 5, 16, dtype=dtype)
    for mode in block.modes:
        y = block(x, mode=mode)
        assert y.dtype == dtype and y.shape == (2, 5, 16) and torch.isfinite(y).all()
    y_t, state = block.step(x[:, 0], block.init_state(2))
    assert y_t.dtype == dtype and state[0].dtype == torch.promote_types(dtype, torch.float32)


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "deltaproduct"])
def test_bad_options_and_shapes(name):
    with pytest.raises(ConfigError, match="d_model=30 is not divisible by n_heads=4"):
        layerlab.build("mixer", name, 30, n_heads=4)
    with pytest.raises(ConfigError, match="n_heads must be >= 1"):
        layerlab.build("mixer", name, 8, n_heads=0)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="conv_size"):
            layerlab.build("mixer", name, 8, n_heads=2, conv_size=bad)
    with pytest.raises(ConfigError, match="chunk_size"):
        layerlab.build("mixer", name, 8, n_heads=2, chunk_size=0)
    with pytest.raises(ConfigError, match="norm_eps"):
        layerlab.build("mixer", name, 8, n_heads=2, norm_eps=-1.0)
    block = layerlab.build("mixer", name, 8, n_heads=2)
    with pytest.raises(ShapeError, match="got \\(2, 3, 6\\)"):
        block(torch.randn(2, 3, 6))
    with pytest.raises(ShapeError):
        block.step(torch.randn(2, 3, 8), block.init_state(2))
    if name != "deltaproduct":
        with pytest.raises(ConfigError, match="unknown option"):
            layerlab.build("mixer", name, 8, n_householder=2)


def test_deltaproduct_options_and_registry():
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="n_householder"):
            DeltaProduct(8, n_heads=2, n_householder=bad)
    dp = DeltaProduct(8, n_heads=2)
    assert dp.n_householder == 2 and not dp.gated and dp.modes == ("fused", "chunk", "reference") and dp.recurrent
    assert dp.k_proj.out_features == 2 * 8 and dp.b_proj.out_features == 2 * 2
    for name in CLASSES:
        assert get("mixer", name).width_multiple({"n_heads": 8}) == 8
        assert isinstance(layerlab.build("mixer", name, 8, n_heads=2), CLASSES[name])
