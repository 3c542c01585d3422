"""Tests of the WeightWatcher-compatible parts of layerlab.lens.spectra: the Gram-matrix ESD, the
WeightWatcher power-law fit, finger fixes, quality metrics, correlation traps and the model
summary, against brute-force computations and hand formulas. (Agreement with WeightWatcher
itself is measured in benchmarks/lens_spectra.py: no test needs it installed.)"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError, UnknownNameError
from layerlab.lens import spectra as S


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pareto(alpha: float, n: int, xmin: float, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


def _ww_brute_force(values: list[float], thresh: float = 1e-5) -> tuple[float, float, float]:
    """WeightWatcher's fit restated from its description, for N >= 20 values: candidates every
    sorted value but the largest; α = 1 + n / Σ ln(x/xmin); D = max_k |P(x_k) - k/n| with
    P(x) = 1 - (x/xmin)^(1-α); first smallest D."""
    x = sorted(v for v in values if v > thresh)
    best = None
    for i in range(len(x) - 1):
        tail = x[i:]
        n = len(tail)
        alpha = 1 + n / sum(math.log(v / tail[0]) for v in tail)
        d = max(abs((1 - (v / tail[0]) ** (1 - alpha)) - k / n) for k, v in enumerate(tail))
        if best is None or d < best[2]:
            best = (alpha, tail[0], d)
    return best


# --------------------------------------------------------------------------------------------
# Gram ESD against the SVD


@pytest.mark.parametrize("shape", [(200, 90), (90, 200), (64, 64)])
def test_gram_esd_equals_svd_esd(shape):
    w = torch.randn(*shape, generator=_gen(1), dtype=torch.float64)
    for normalize in (True, False):
        gram = S.esd(w, normalize=normalize)
        svd = S.esd(w, normalize=normalize, method="svd")
        assert gram.shape == svd.shape == (min(shape),)
        assert torch.all(gram[1:] >= gram[:-1])
        # the documented contract: absolute error ~1e-16·λ_max, so relative error 1e-10 where
        # the matrix is well conditioned (rectangular); a square one has λ_min ~ λ_max/1e6
        assert torch.max((gram - svd).abs()) <= 1e-14 * svd.max()
        if shape[0] != shape[1]:
            assert torch.max((gram - svd).abs() / svd.abs()) <= 1e-10
    conv = torch.randn(16, 6, 3, 3, generator=_gen(2), dtype=torch.float64)
    for mode in S.CONV_MODES:
        a, b = S.esd(conv, conv=mode), S.esd(conv, conv=mode, method="svd")
        assert torch.max((a - b).abs() / b.abs()) <= 1e-10
    f32 = w.float()
    assert torch.max((S.esd(f32) - S.esd(f32, method="svd")).abs()) <= 1e-10 * S.esd(f32).max()
    with pytest.raises(UnknownNameError, match="ESD method"):
        S.esd(w, method="eig")


# --------------------------------------------------------------------------------------------
# WeightWatcher's power-law fit


def test_ww_fit_equals_brute_force_scan():
    x = _pareto(2.5, 60, 0.5, _gen(3))
    x = torch.cat([x, torch.rand(15, generator=_gen(4), dtype=torch.float64) * 0.5,
                   torch.full((3,), 1e-6, dtype=torch.float64)])  # three values below the threshold
    fit = S.power_law(x, method="weightwatcher")
    alpha, xmin, d = _ww_brute_force(x.tolist())
    assert fit.alpha == pytest.approx(alpha, rel=1e-10)
    assert fit.xmin == xmin and fit.ks_distance == pytest.approx(d, rel=1e-10, abs=1e-13)
    assert fit.n_tail == int((x >= xmin).sum())
    assert fit.sigma == pytest.approx((alpha - 1) / math.sqrt(fit.n_tail), rel=1e-12)
    # its plain-Python reference form agrees, and the CSN fit is another fit on the same data
    ref = S._power_law_ww_plain(x.tolist())
    assert (fit.xmin, fit.n_tail) == (ref.xmin, ref.n_tail) and fit.alpha == pytest.approx(ref.alpha, rel=1e-10)
    csn = S.power_law(x)
    assert csn.ks_distance > fit.ks_distance  # the two-sided distance is never smaller


@pytest.mark.parametrize("n", [6, 12, 19, 25, 300])
def test_ww_fit_equals_reference_form_small_and_large(n):
    # n < 20: WeightWatcher's small-sample rule (α = 1 + (n-1)/s, tails >= 8 points; n < 9:
    # the whole sample); a block size that splits the scan into many blocks
    x = _pareto(2.2, n, 1.0, _gen(n))
    fit = S.power_law(x, method="weightwatcher", max_block=64)
    ref = S._power_law_ww_plain(x.tolist())
    assert fit.xmin == ref.xmin and fit.n_tail == ref.n_tail
    assert fit.alpha == pytest.approx(ref.alpha, rel=1e-10)
    assert fit.ks_distance == pytest.approx(ref.ks_distance, rel=1e-10, abs=1e-13)
    if 8 < n < 20:
        assert fit.n_tail >= 8
        s = float(torch.log(x[x >= fit.xmin] / fit.xmin).sum())
        assert fit.alpha == pytest.approx(1 + (fit.n_tail - 1) / s, rel=1e-12)


def test_ww_fit_with_ties_and_scale_invariance():
    x = torch.tensor([1., 1, 1, 2, 2, 3, 4, 4, 5, 8, 9, 10, 11, 12, 13, 20, 30, 40, 41, 42, 43, 50], dtype=torch.float64)
    fit = S.power_law(x, method="weightwatcher")
    alpha, xmin, _ = _ww_brute_force(x.tolist())
    assert (fit.alpha, fit.xmin) == (pytest.approx(alpha, rel=1e-10), xmin)
    scaled = S.power_law(x * 1e3, method="weightwatcher")
    assert scaled.alpha == pytest.approx(fit.alpha, rel=1e-10) and scaled.xmin == pytest.approx(1e3 * fit.xmin)


def test_ww_fit_errors():
    with pytest.raises(UnknownNameError, match="power-law fit method"):
        S.power_law([1.0, 2.0, 3.0], method="ww")
    with pytest.raises(ConfigError, match="fixed xmin"):
        S.power_law(torch.arange(1.0, 30.0), method="weightwatcher", xmin=2.0)
    with pytest.raises(ShapeError, match="above evals_thresh"):
        S.power_law([1e-6, 2e-6, 1.0], method="weightwatcher")
    with pytest.raises(ShapeError, match="no candidate"):
        S.power_law([2.0] * 30, method="weightwatcher")


# --------------------------------------------------------------------------------------------
# Fingers


def test_clip_xmax_follows_weightwatchers_rule_and_undoes_a_spurious_alpha():
    # a Pareto tail (α = 2.5, 100 values) plus 8 planted fingers: a steep cluster (the quantiles of
    # a Pareto with α = 15) 3x above its maximum, which wins the KS scan as a short tail with a
    # spuriously large α. clip_xmax drops the k largest values for k = 2, 3, ... until α falls by
    # more than finger_thresh = 1: here at k = 2, where the long tail wins again (with 6 of the
    # fingers still in it, which pull α down by about 3σ: WeightWatcher's rule stops at the
    # first flip, it does not remove every finger)
    base = _pareto(2.5, 100, 1.0, _gen(0))
    q = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    x = torch.cat([base, 3 * base.max() * (1 - q) ** (-1 / 14)])
    clean = S.power_law(base, method="weightwatcher")
    raw = S.power_law(x, method="weightwatcher")
    assert raw.alpha > clean.alpha + 10 and raw.n_tail == 8  # the fingers' own tail
    fixed = S.power_law(x, method="weightwatcher", fix_fingers="clip_xmax")
    k = fixed.n_fingers
    assert k == 2 and fixed.raw_alpha == raw.alpha
    xs = torch.sort(x).values
    assert fixed.alpha == S.power_law(xs[:-k], method="weightwatcher").alpha < raw.alpha - 1
    assert abs(fixed.alpha - clean.alpha) < 3 * clean.sigma and fixed.n_tail > 50
    # removing every finger gives the clean fit exactly; a finger-free tail is left alone
    assert S.power_law(xs[:-8], method="weightwatcher") == clean
    plain = S.power_law(base, method="weightwatcher", fix_fingers="clip_xmax")
    assert plain.n_fingers == 0 and plain.alpha == clean.alpha


def test_xmin_peak_restricts_xmin_to_the_peak_window():
    g = _gen(6)
    bulk = 1 + torch.rand(600, generator=g, dtype=torch.float64)  # the ESD's peak on [1, 2]
    x = torch.cat([bulk, _pareto(3.0, 150, 2.0, g)])
    fit = S.power_law(x, fix_fingers="xmin_peak")
    xs = np.sort(x.numpy())
    counts, edges = np.histogram(np.log10(xs), bins=100)
    peak = 10 ** edges[np.argmax(counts)]
    assert 0.95 * peak <= fit.xmin <= 1.5 * peak
    # brute force over the window's values: the two-sided KS scan of Clauset et al.
    best = None
    for v in np.unique(xs[(xs >= 0.95 * peak) & (xs <= 1.5 * peak)]):
        tail = xs[xs >= v]
        m = tail.size
        alpha = 1 + m / np.log(tail / v).sum()
        cdf = 1 - (tail / v) ** (1 - alpha)
        k = np.arange(m)
        d = max(((k + 1) / m - cdf).max(), (cdf - k / m).max())
        if best is None or d < best[2]:
            best = (v, alpha, d)
    assert fit.xmin == best[0] and fit.alpha == pytest.approx(best[1], rel=1e-10)
    assert fit.ks_distance == pytest.approx(best[2], rel=1e-10)
    with pytest.raises(ConfigError, match="xmin_max"):
        S.power_law(x, fix_fingers="xmin_peak", xmin_max=0.5 * peak)
    with pytest.raises(UnknownNameError, match="fix_fingers"):
        S.power_law(x, fix_fingers="clip")


# --------------------------------------------------------------------------------------------
# Quality metrics


def test_quality_metrics_against_hand_computation():
    w = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)  # λ = 9, 1
    m = S.quality_metrics(S.esd(w, normalize=False), alpha=2.0)
    assert m["norm"] == pytest.approx(10.0, rel=1e-12) and m["log_norm"] == pytest.approx(1.0, rel=1e-12)
    assert m["spectral_norm"] == pytest.approx(9.0, rel=1e-12)
    assert m["log_spectral_norm"] == pytest.approx(math.log10(9), rel=1e-12)
    assert m["alpha_weighted"] == pytest.approx(2 * math.log10(9), rel=1e-12)
    assert m["log_alpha_norm"] == pytest.approx(math.log10(81 + 1), rel=1e-12)
    assert m["stable_rank"] == pytest.approx(10 / 9, rel=1e-12)
    # Frobenius and spectral norms of a random matrix; no overflow at a large α
    v = torch.randn(50, 20, generator=_gen(7), dtype=torch.float64) * 30
    m = S.quality_metrics(S.esd(v, normalize=False), alpha=300.0)
    assert m["log_norm"] == pytest.approx(math.log10(float(v.square().sum())), rel=1e-12)
    assert m["log_spectral_norm"] == pytest.approx(2 * math.log10(float(torch.linalg.matrix_norm(v, 2))), rel=1e-12)
    lam = S.esd(v, normalize=False).tolist()
    top = max(lam)
    assert m["log_alpha_norm"] == pytest.approx(300 * math.log10(top) + math.log10(sum((x / top) ** 300 for x in lam)),
                                                rel=1e-12)
    with pytest.raises(ShapeError, match="ESD"):
        S.quality_metrics([0.0, 0.0], alpha=2.0)


# --------------------------------------------------------------------------------------------
# Correlation traps


def test_correlation_traps_gaussian_none_planted_entry_one():
    w = torch.randn(300, 150, generator=_gen(8), dtype=torch.float64)
    clean = S.correlation_traps(w, generator=_gen(9))
    assert clean.n_traps == 0 and clean.replicas == 1
    assert clean.mp.sigma2 == pytest.approx(1.0, rel=0.05)  # the shuffled bulk is MP with the entries' variance
    assert clean.eigenvalues.max() < clean.threshold
    # the margin: λ+ + sqrt(σ² s_TW), by hand
    q, m, s2 = 2.0, 150, clean.mp.sigma2
    s_tw = s2 * (1 + q ** -0.5) ** (4 / 3) / (q ** 0.5 * m ** (2 / 3))
    assert clean.threshold == pytest.approx(s2 * (1 + q ** -0.5) ** 2 + math.sqrt(s2 * s_tw), rel=1e-12)
    w[3, 5] = 60.0  # one large entry: an eigenvalue near 60² / 300 = 12 whatever the shuffle
    trapped = S.correlation_traps(w, generator=_gen(9))
    assert trapped.n_traps == 1
    assert trapped.eigenvalues.max() == pytest.approx(3600 / 300, rel=0.15)
    # a small matrix gets 5 replicas; the count is per replica; the global RNG is not used
    small = torch.randn(40, 20, generator=_gen(10), dtype=torch.float64)
    small[0, 0] = 40.0
    state = torch.get_rng_state()
    few = S.correlation_traps(small)
    assert torch.equal(state, torch.get_rng_state())
    assert few.replicas == 5 and few.eigenvalues.numel() == 100 and few.n_traps == 1
    with pytest.raises(ConfigError, match="replicas"):
        S.correlation_traps(small, replicas=0)


# --------------------------------------------------------------------------------------------
# Whole-model summary


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(64, 96)
        self.fc2 = nn.Linear(96, 5)  # 5 eigenvalues < min_evals = 8: skipped
        self.norm = nn.LayerNorm(96)  # 1-D: skipped


def conv_traps(model: nn.Module) -> float:
    return S.correlation_traps(model.conv.weight.detach()).n_traps


def test_model_summary_rows_and_average():
    torch.manual_seed(0)
    model = _Net().double()
    model.train()
    summary = S.model_summary(model, randomize=True, fix_fingers="clip_xmax")
    assert model.training  # side-effect free
    assert [r["name"] for r in summary.layers] == ["conv.weight", "fc1.weight"]
    row = summary.layers[1]
    w = model.fc1.weight.detach()
    lam = S.esd(w, normalize=False)
    fit = S.power_law(lam, method="weightwatcher", fix_fingers="clip_xmax")
    assert (row["N"], row["M"], row["n_evals"]) == (96, 64, 64)
    assert (row["alpha"], row["xmin"], row["n_tail"], row["n_fingers"]) == (fit.alpha, fit.xmin, fit.n_tail,
                                                                            fit.n_fingers)
    m = S.quality_metrics(lam, fit.alpha)
    for key in ("log_norm", "log_spectral_norm", "alpha_weighted", "log_alpha_norm", "stable_rank"):
        assert row[key] == pytest.approx(m[key], rel=1e-12)
    assert row["num_traps"] == 0 == conv_traps(model)  # i.i.d. uniform initial weights: no large entries
    assert row["warning"] == ("over-trained" if fit.alpha < 2 else "under-trained" if fit.alpha > 6 else "")
    conv = summary.layers[0]
    assert conv["num_traps"] == 0
    assert (conv["N"], conv["M"], conv["n_evals"]) == (8, 4, 36)  # 9 positions x 4
    for key in S.SUMMARY_AVERAGED:
        assert summary.average[key] == pytest.approx((conv[key] + row[key]) / 2, rel=1e-12)
    csn = S.model_summary(model, method="csn", min_evals=5)
    assert [r["name"] for r in csn.layers] == ["conv.weight", "fc1.weight", "fc2.weight"]
    assert csn.layers[1]["alpha"] == S.power_law(lam).alpha
