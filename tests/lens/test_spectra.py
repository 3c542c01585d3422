"""Tests of layerlab.lens.spectra against closed forms, reference forms and random-matrix theory."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

from layerlab.errors import ConfigError, ShapeError, UnknownNameError
from layerlab.lens import spectra as S

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthonormal(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64))
    return q


def _with_singular_values(rows: int, cols: int, s: torch.Tensor, g: torch.Generator):
    """A rows x cols matrix U diag(s) V^T with the given singular values."""
    k = s.numel()
    return _orthonormal(rows, k, g) @ torch.diag(s) @ _orthonormal(cols, k, g).T


def _pareto(alpha: float, n: int, xmin: float, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


# --------------------------------------------------------------------------------------------
# ESD


@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (17, 17)])
def test_esd_is_squared_singular_values_over_n(shape):
    # Reference: eigenvalues of the M x M correlation matrix X = W^T W / N built explicitly
    # (numpy eigh), for W oriented with N >= M. Tolerance 1e-12 relative to the largest.
    w = torch.randn(*shape, generator=_gen(0), dtype=torch.float32)
    a = w.double().numpy()
    if a.shape[0] < a.shape[1]:
        a = a.T
    n = a.shape[0]
    ref = np.linalg.eigvalsh(a.T @ a / n)
    lam = S.esd(w)
    assert lam.dtype == torch.float64 and lam.shape == (min(shape),)
    assert torch.all(lam[1:] >= lam[:-1])
    assert np.max(np.abs(lam.numpy() - ref)) <= 1e-12 * ref.max()
    raw = S.esd(w, normalize=False)
    assert np.max(np.abs(raw.numpy() - n * ref)) <= 1e-12 * n * ref.max()


def test_esd_conv_per_position_pools_slice_spectra():
    # Each spatial slice W[:, :, i, j] (out=6, in=4) is built with known singular values s_p,
    # so the pooled ESD must be the sorted union of s_p^2 / 6 (N = out = 6, M = in = 4).
    g = _gen(1)
    out, inp, kh, kw = 6, 4, 3, 2
    kernel = torch.empty(out, inp, kh, kw, dtype=torch.float64)
    expected = []
    for i in range(kh):
        for j in range(kw):
            s = torch.rand(inp, generator=g, dtype=torch.float64) * 3 + 0.1 * (i * kw + j + 1)
            kernel[:, :, i, j] = _with_singular_values(out, inp, s, g)
            expected.append(s**2 / out)
    expected = torch.sort(torch.cat(expected)).values
    lam = S.esd(kernel)
    assert lam.shape == (kh * kw * inp,)
    assert torch.max(torch.abs(lam - expected)) <= 1e-12 * expected.max()
    # the rank measures see the block-diagonal matrix of the slices
    blocks = torch.block_diag(*[kernel[:, :, i, j] for i in range(kh) for j in range(kw)])
    assert S.stable_rank(kernel) == pytest.approx(S.stable_rank(blocks), rel=1e-10)
    assert S.effective_rank(kernel) == pytest.approx(S.effective_rank(blocks), rel=1e-10)
    assert S.condition_number(kernel) == pytest.approx(S.condition_number(blocks), rel=1e-10)


def test_esd_conv_flatten_is_im2col_matrix_spectrum():
    # A (5, 3*2*2) matrix with known singular values, reshaped to a (5, 3, 2, 2) kernel: the
    # flattened matrix is 5 x 12, oriented 12 x 5, so the ESD is s^2 / 12.
    g = _gen(2)
    s = torch.tensor([4.0, 2.5, 1.0, 0.5, 0.25], dtype=torch.float64)
    kernel = _with_singular_values(5, 12, s, g).reshape(5, 3, 2, 2)
    lam = S.esd(kernel, conv="flatten")
    expected = torch.sort(s**2 / 12).values
    assert torch.max(torch.abs(lam - expected)) <= 1e-12 * expected.max()
    assert S.condition_number(kernel, conv="flatten") == pytest.approx(16.0, rel=1e-10)


# --------------------------------------------------------------------------------------------
# Power law


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.5])
def test_power_law_recovers_pareto_exponent(alpha):
    # n = 5000 Pareto(alpha, xmin = 1) samples: the MLE is within 3 standard errors, with the
    # true xmin given and with the KS-optimal xmin fitted.
    x = _pareto(alpha, 5000, 1.0, _gen(int(alpha * 10)))
    given = S.power_law(x, xmin=1.0)
    assert given.n_tail == 5000 and given.xmin == 1.0
    assert given.sigma == pytest.approx((given.alpha - 1) / math.sqrt(5000), rel=1e-12)
    assert abs(given.alpha - alpha) <= 3 * given.sigma
    a, xmin, sigma, ks = S.power_law(x)
    assert abs(a - alpha) <= 3 * sigma
    assert xmin >= 1.0 and 0 < ks < 0.05


def test_power_law_finds_the_tail_of_a_mixture():
    # 3000 uniform points on [0, 1) below a Pareto(2.5) tail of 3000 points from xmin = 1: the
    # KS-optimal xmin must cut off the body (xmin in [0.9, 3]) and alpha be within 3 sigma.
    # (Over seeds 0-9 we measured xmin in [0.98, 2.15] and |alpha - 2.5| / sigma <= 2.61.)
    g = _gen(7)
    x = torch.cat([torch.rand(3000, generator=g, dtype=torch.float64), _pareto(2.5, 3000, 1.0, g)])
    fit = S.power_law(x[torch.randperm(6000, generator=g)])
    assert 0.9 <= fit.xmin <= 3.0
    assert abs(fit.alpha - 2.5) <= 3 * fit.sigma


@pytest.mark.parametrize("max_block", [1 << 22, 1000])
def test_power_law_vectorized_matches_reference(max_block):
    # A lognormal sample (no exact power law, so xmin is a real choice) with ties from rounding;
    # a tiny max_block forces many KS blocks. Identical xmin; alpha, sigma, D to 1e-12 relative.
    g = _gen(3)
    x = torch.exp(torch.randn(300, generator=g, dtype=torch.float64) * 1.5)
    x = torch.round(x * 20) / 20  # ties and a few zeros (dropped)
    ref = S._power_law_plain(x.tolist(), min_tail=10)
    fit = S.power_law(x, min_tail=10, max_block=max_block)
    assert fit.xmin == ref.xmin and fit.n_tail == ref.n_tail
    for got, want in zip(fit, ref):
        assert got == pytest.approx(want, rel=1e-12, abs=0)
    # given xmin: the same closed form
    a, xmin, sigma, ks = S.power_law(x, xmin=ref.xmin)
    assert (a, sigma, ks) == pytest.approx((ref.alpha, ref.sigma, ref.ks_distance), rel=1e-12, abs=0)
    # a run of 30 equal values at the top: a tail of one value is no candidate in either form
    flat = torch.cat([x, torch.full((30,), float(x.max()) * 2, dtype=DT)])
    assert tuple(S.power_law(flat, min_tail=10)) == pytest.approx(tuple(S._power_law_plain(flat.tolist())), rel=1e-12)


def test_power_law_bad_inputs():
    x = _pareto(2.0, 50, 1.0, _gen(4))
    with pytest.raises(ConfigError, match="min_tail"):
        S.power_law(x, min_tail=1)
    with pytest.raises(ConfigError, match="xmin"):
        S.power_law(x, xmin=0.0)
    with pytest.raises(ShapeError, match="min_tail"):
        S.power_law(x[:5])
    with pytest.raises(ShapeError, match="min_tail"):
        S.power_law(-x)  # nothing positive is left
    with pytest.raises(ShapeError, match="min_tail"):
        S.power_law(torch.ones(40))  # all equal: no tail to fit
    with pytest.raises(ShapeError, match="xmin"):
        S.power_law(x, xmin=1e9)
    with pytest.raises(ShapeError, match="1-D"):
        S.power_law(x.reshape(5, 10))
    with pytest.raises(ShapeError, match="NaN"):
        S.power_law(torch.cat([x, torch.tensor([math.nan], dtype=torch.float64)]))


# --------------------------------------------------------------------------------------------
# Marchenko–Pastur


def _mp_cdf(x: np.ndarray, q: float, sigma2: float) -> np.ndarray:
    lo, hi = S.mp_edges(q, sigma2)
    return np.array([integrate.quad(lambda t: float(S.mp_density(torch.tensor(t), q, sigma2)),
                                    lo, min(max(v, lo), hi), limit=200)[0] for v in x])


@pytest.mark.parametrize("q", [1.0, 2.5, 4.0])
def test_mp_density_moments(q):
    # Closed forms: total mass 1, mean sigma^2, second moment sigma^4 (1 + 1/Q) (scipy quad as
    # the independent integrator); zero outside [lambda-, lambda+]. Tolerance 1e-7.
    sigma2 = 0.7
    lo, hi = S.mp_edges(q, sigma2)
    assert (lo, hi) == pytest.approx((sigma2 * (1 - q**-0.5) ** 2, sigma2 * (1 + q**-0.5) ** 2))
    rho = lambda t: float(S.mp_density(torch.tensor(t), q, sigma2))  # noqa: E731
    moments = [integrate.quad(lambda t, k=k: t**k * rho(t), lo, hi, limit=200)[0] for k in range(3)]
    assert moments == pytest.approx([1.0, sigma2, sigma2**2 * (1 + 1 / q)], rel=1e-7)
    outside = torch.tensor([lo - 0.1, hi + 1e-9, hi + 1.0, -1.0], dtype=torch.float64)
    assert torch.all(S.mp_density(outside, q, sigma2) == 0)
    fit = S.marchenko_pastur(torch.linspace(lo, hi, 50), aspect_ratio=q, sigma2=sigma2)
    inside = torch.linspace(lo, hi, 7, dtype=torch.float64)[1:-1]
    assert torch.equal(fit.density(inside), S.mp_density(inside, q, sigma2))


@pytest.mark.parametrize("shape", [(2000, 500), (1000, 1000)])
def test_gaussian_matrix_matches_mp_edges_and_bulk(shape):
    # Gaussian W with entry variance 1: the fitted edges within 2% of the theoretical lambda+-
    # (measured 0.12%). The empirical largest eigenvalue within 2% of lambda+ after its
    # finite-size Tracy-Widom mean shift E[TW1] s_TW = -1.2065 s_TW, s_TW = (1 + Q^-1/2)^(4/3)
    # / (Q^1/2 M^(2/3)) (Johnstone 2001; raw offsets measured -1.1% and -1.9%, TW sd ~0.8%);
    # the smallest within 2% of lambda+ of lambda- (measured 0.2%); the ESD's KS distance to
    # the MP CDF <= 0.02 (measured 0.003).
    w = torch.randn(*shape, generator=_gen(5), dtype=torch.float64)
    q, m = shape[0] / shape[1], shape[1]
    lo, hi = S.mp_edges(q, 1.0)
    lam = S.esd(w)
    fit = S.marchenko_pastur(lam, aspect_ratio=q)
    assert fit.lambda_plus == pytest.approx(hi, rel=0.02)
    assert fit.lambda_minus == pytest.approx(lo, rel=0.02, abs=1e-12)  # lo = 0 when Q = 1
    s_tw = (1 + q**-0.5) ** (4 / 3) / (q**0.5 * m ** (2 / 3))
    assert float(lam[-1]) == pytest.approx(hi - 1.2065 * s_tw, rel=0.02)
    assert abs(float(lam[0]) - lo) <= 0.02 * hi
    assert fit.n_spikes == 0
    grid = np.quantile(lam.numpy(), np.linspace(0.05, 0.95, 10))
    emp = np.searchsorted(lam.numpy(), grid, side="right") / lam.numel()
    assert np.max(np.abs(emp - _mp_cdf(grid, q, 1.0))) <= 0.02


@pytest.mark.parametrize(("method", "tol"), [("mean", 0.01), ("median", 0.02)])
def test_mp_fit_recovers_scale(method, tol):
    # W = 0.3 G (sigma^2 = 0.09), Q = 4, M = 300: fitted sigma^2 within 1% (mean) / 2% (median,
    # whose sample median sits O(1/M) low: measured -0.7%), also with two strong spikes added.
    g = _gen(6)
    w = 0.3 * torch.randn(1200, 300, generator=g, dtype=torch.float64)
    fit = S.marchenko_pastur(S.esd(w), aspect_ratio=4.0, method=method)
    assert fit.sigma2 == pytest.approx(0.09, rel=tol)
    spiked = w + _with_singular_values(1200, 300, torch.tensor([60.0, 45.0], dtype=torch.float64), g)
    fit = S.marchenko_pastur(S.esd(spiked), aspect_ratio=4.0, method=method)
    assert fit.sigma2 == pytest.approx(0.09, rel=tol)
    assert fit.n_spikes == 2


def test_spike_count():
    # Rank-2 perturbation of strength theta^2 in {9, 16} (far above the BBP threshold 1/sqrt(Q))
    # gives exactly 2 spikes, with and without a Tracy-Widom margin; pure Gaussian matrices give
    # 0 spikes beyond the TW 99% margin (2.02) on 10 seeds.
    for seed in range(10):
        g = _gen(100 + seed)
        w = torch.randn(1000, 250, generator=g, dtype=torch.float64)
        assert S.marchenko_pastur(S.esd(w), aspect_ratio=4.0, tw_margin=2.02).n_spikes == 0
    n = 1000
    pert = _with_singular_values(n, 250, torch.tensor([3.0, 4.0], dtype=torch.float64) * math.sqrt(n), g)
    lam = S.esd(w + pert)
    for margin in (0.0, 2.02):
        assert S.marchenko_pastur(lam, aspect_ratio=4.0, tw_margin=margin).n_spikes == 2
    # known sigma^2 skips the fit and gives the same count
    fit = S.marchenko_pastur(lam, aspect_ratio=4.0, sigma2=1.0)
    assert fit.n_spikes == 2 and fit.sigma2 == 1.0 and fit.lambda_plus == 2.25


def test_mp_bad_inputs():
    lam = S.esd(torch.randn(40, 20, generator=_gen(8)))
    with pytest.raises(ConfigError, match="aspect_ratio"):
        S.marchenko_pastur(lam, aspect_ratio=0.5)
    with pytest.raises(UnknownNameError, match="median"):
        S.marchenko_pastur(lam, aspect_ratio=2.0, method="medain")
    with pytest.raises(ConfigError, match="sigma2"):
        S.marchenko_pastur(lam, aspect_ratio=2.0, sigma2=-1.0)
    with pytest.raises(ConfigError, match="tw_margin"):
        S.marchenko_pastur(lam, aspect_ratio=2.0, tw_margin=-1.0)
    with pytest.raises(ShapeError):
        S.marchenko_pastur(torch.empty(0), aspect_ratio=2.0)
    with pytest.raises(ConfigError, match="sigma2"):
        S.mp_density(lam, 2.0, 0.0)


# --------------------------------------------------------------------------------------------
# Rank measures


def test_rank_measures_closed_forms():
    # W = U diag(s) V^T, 9 x 5: stable rank sum s^2 / s_1^2, effective rank exp(H(s / sum s)),
    # condition number s_1 / s_5; transposing changes nothing. Tolerance 1e-10 relative.
    g = _gen(9)
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    w = _with_singular_values(9, 5, s, g)
    p = (s / s.sum()).tolist()
    for m in (w, w.T):
        assert S.stable_rank(m) == pytest.approx(39.25 / 25, rel=1e-10)
        assert S.effective_rank(m) == pytest.approx(math.exp(-sum(v * math.log(v) for v in p)),
                                                    rel=1e-10)
        assert S.condition_number(m) == pytest.approx(10.0, rel=1e-10)
    # k equal singular values: effective rank and stable rank are exactly k
    flat = _with_singular_values(12, 7, torch.full((7,), 2.0, dtype=torch.float64), g)
    assert S.effective_rank(flat) == pytest.approx(7.0, rel=1e-10)
    assert S.stable_rank(flat) == pytest.approx(7.0, rel=1e-10)
    assert S.condition_number(flat) == pytest.approx(1.0, rel=1e-10)
    # singular (rank 4 of 5, in float32 and float64) -> inf; zero matrix -> 0, 0, inf
    low = _with_singular_values(9, 5, s[:4], g)
    assert S.condition_number(low) == math.inf
    assert S.condition_number(low.float()) == math.inf
    zero = torch.zeros(6, 4)
    assert (S.stable_rank(zero), S.effective_rank(zero), S.condition_number(zero)) == (
        0.0, 0.0, math.inf)


def test_bad_weights_raise():
    with pytest.raises(ShapeError, match="dim"):
        S.esd(torch.ones(5))
    with pytest.raises(ShapeError, match="dim"):
        S.stable_rank(torch.tensor(1.0))
    with pytest.raises(ShapeError, match="empty"):
        S.esd(torch.ones(0, 3))
    with pytest.raises(UnknownNameError, match="flatten"):
        S.esd(torch.ones(3, 2, 3, 3), conv="flaten")


# --------------------------------------------------------------------------------------------
# Models


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3)
        self.norm = nn.LayerNorm(64)
        self.fc1 = nn.Linear(64, 128)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(128, 10)
        self.orth = nn.Linear(60, 60, bias=False)
        nn.init.orthogonal_(self.orth.weight)


def _model():
    torch.manual_seed(0)
    return _Net().double()


def test_layer_spectra_values_and_skip_rule():
    model = _model()
    out = S.layer_spectra(model, min_size=50)
    # conv: 9 slices x 8 = 72 eigenvalues; fc1: 64; orth: 60; fc2 (10) skipped; 1-D skipped
    assert set(out) == {"conv.weight", "fc1.weight", "orth.weight"}
    assert set(S.layer_spectra(model, min_size=10)) == set(out) | {"fc2.weight"}
    w = model.fc1.weight.detach()
    row = out["fc1.weight"]
    fit = S.power_law(S.esd(w, method="svd"))  # layer_spectra takes the SVD (for the condition number)
    assert (row["alpha"], row["xmin"], row["alpha_sigma"], row["ks_distance"]) == tuple(fit)
    mp = S.marchenko_pastur(S.esd(w, method="svd"), aspect_ratio=2.0)
    assert (row["mp_sigma2"], row["n_spikes"]) == (mp.sigma2, mp.n_spikes)
    spec = float(torch.linalg.matrix_norm(w, ord=2))
    assert row["spectral_norm"] == pytest.approx(spec, rel=1e-12)
    assert row["log_spectral_norm"] == pytest.approx(math.log10(spec**2), rel=1e-12)
    assert row["stable_rank"] == pytest.approx(
        float(torch.linalg.matrix_norm(w) ** 2) / spec**2, rel=1e-12)
    assert row["effective_rank"] == S.effective_rank(w)
    assert row["condition_number"] == S.condition_number(w)
    # orthogonal: all eigenvalues equal -> no power law (NaN), condition number 1
    orth = out["orth.weight"]
    assert math.isnan(orth["alpha"])  # float32 orthogonal init: flat to ~1e-6
    assert orth["condition_number"] == pytest.approx(1, rel=1e-5)
    assert out["conv.weight"]["spectral_norm"] == pytest.approx(
        float(torch.linalg.matrix_norm(model.conv.weight.detach().permute(2, 3, 0, 1), ord=2)
              .max()), rel=1e-12)
    with pytest.raises(ConfigError, match="min_tail"):
        S.layer_spectra(model, min_size=5)
    with pytest.raises(UnknownNameError):
        S.layer_spectra(model, conv="pooled")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gram_eigenvalues_equal_the_svd(dtype):
    # the spectra probe's Gram path against the SVD: every squared singular value to 1e-10 of the
    # largest (the Gram form's accuracy is absolute, ~1e-16 s_max²), for tall, wide, low-rank and
    # ill-conditioned matrices and a convolution kernel, in float64 and float32 weights (both
    # computed in float64); the stable rank it feeds the probe equal to 1e-10
    g = torch.Generator().manual_seed(4)
    U, _ = torch.linalg.qr(torch.randn(40, 30, generator=g, dtype=DT))
    V, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=DT))
    weights = [torch.randn(50, 20, generator=g, dtype=DT), torch.randn(12, 70, generator=g, dtype=DT),
               torch.randn(30, 4, generator=g, dtype=DT) @ torch.randn(4, 25, generator=g, dtype=DT),
               U @ torch.diag(torch.logspace(0, -8, 30, dtype=DT)) @ V.T,
               torch.randn(8, 6, 3, 3, generator=g, dtype=DT)]
    for w in weights:
        w = w.to(dtype)
        for conv in S.CONV_MODES:
            s, n, m = S._singular_values(w, conv)
            sg, ng, mg = S._singular_values(w, conv, gram=True)
            assert (n, m) == (ng, mg) and s.dtype == sg.dtype == DT
            assert float((sg**2 - s**2).abs().max()) <= 1e-10 * float(s[0] ** 2), (tuple(w.shape), conv)
            assert abs(S._stable_rank(sg) - S._stable_rank(s)) <= 1e-10 * S._stable_rank(s)


def test_layer_esds_match_esd():
    model = _model()
    esds = S.layer_esds(model)
    assert set(esds) == {"conv.weight", "fc1.weight", "fc2.weight", "orth.weight"}
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            assert torch.equal(esds[name], S.esd(p))
    assert esds["conv.weight"].shape == (72,)
    assert S.layer_esds(model, conv="flatten")["conv.weight"].shape == (16,)


def test_instruments_are_side_effect_free():
    model = _model()
    model.train()
    model.drop.eval()  # mixed flags must survive
    x = torch.randn(4, 60, dtype=torch.float64)
    model.orth(x).sum().backward()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    grad_vals = {n: (g.clone() if g is not None else None) for n, g in grads.items()}
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    S.layer_spectra(model)
    S.layer_esds(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n])
        assert p.grad is grads[n]
        if grad_vals[n] is not None:
            assert torch.equal(p.grad, grad_vals[n])
