r"""Scattering-type feature extractors on semi-discrete frames: energy bound and vertical translation invariance.

Paper: Wiatowski & Bölcskei, "A Mathematical Theory of Deep Convolutional Neural Networks for
Feature Extraction", 2015 (IEEE Trans. Inf. Theory 2018), arXiv:1512.06293.

Setting (the paper's notation; verified against its abstract and our reading of Secs. II-IV). Layer
``n`` has a module ``(Psi_n, M_n, P_n)``: a filter bank ``Psi_n = {chi_n} u {g_{lambda_n}}`` that is a
semi-discrete frame with bounds ``A_n <= B_n``,

    A_n ||f||^2 <= ||f * chi_n||^2 + sum_{lambda_n} ||f * g_{lambda_n}||^2 <= B_n ||f||^2,

equivalently ``A_n <= |chi_n^(omega)|^2 + sum |g_{lambda_n}^(omega)|^2 <= B_n`` (Littlewood-Paley);
a non-linearity ``M_n`` with Lipschitz constant ``L_n`` and ``M_n 0 = 0`` (modulus, ReLU, tanh:
``L_n = 1``); pooling ``P_n`` with Lipschitz constant ``R_n`` and factor ``S_n >= 1``. The operator
``U_n[lambda_n] f = S_n^{d/2} P_n(M_n(f * g_{lambda_n}))(S_n .)`` propagates a signal along a path
``q = (lambda_1, ..., lambda_n)``, ``U[q] f = U_n[lambda_n] ... U_1[lambda_1] f``, and the features of
layer ``n`` are ``Phi^n(f) = {(U[q] f) * chi_{n+1}}_q``. Under the admissibility condition
``max{B_n, B_n L_n^2 R_n^2} <= 1`` the extractor is non-expansive, ``|||Phi(f) - Phi(h)||| <= ||f - h||``,
hence ``|||Phi(f)|||^2 <= ||f||^2`` (``Phi(0) = 0``); Theorem 1 (vertical translation invariance):
if ``|chi_{n+1}^(omega)| |omega| <= K``, then

    |||Phi^n(T_t f) - Phi^n(f)||| <= 2 pi |t| K / (S_1 ... S_n) ||f||.

Discrete form here (one dimension, periodic signals of length ``L``, circular convolution by FFT;
filters given by their DFT on the frequencies ``omega_k = 2 pi k / L`` in radians per sample, so the
continuous ``2 pi`` of the paper's Fourier convention is absorbed in ``omega``). Pooling is
``P(f)[k] = S^{1/2} (1/S) sum_{j<S} f[S k + j]`` (average over ``S`` samples, then keep every ``S``-th,
with the paper's ``S^{d/2}``): by Cauchy-Schwarz it is non-expansive (``R = 1``), and it is exactly
translation-covariant for shifts that are multiples of ``S``. (Plain sub-sampling ``S^{1/2} f[S k]``
is not non-expansive on sequences: a unit impulse gains a factor ``S``.) The discrete Theorem 1 for
shifts ``t`` that are multiples of ``S_1 ... S_n``: ``U^n(T_t f) = T_{t / (S_1..S_n)} U^n(f)`` exactly, and
``|e^{-i omega s} - 1| <= |omega s|`` gives

    |||Phi^n(T_t f) - Phi^n(f)||| <= |t| K_{n+1} / (S_1 ... S_n) ||f||,   K_{n+1} = max_omega |chi_{n+1}^(omega)| |omega|.

The Gaussian band-pass filters are not symmetric in frequency, so ``f * g_lambda`` is complex: the
modulus takes ``|.|``; ReLU and tanh act on the real part (``Re`` is 1-Lipschitz, so the composite
still has ``L_n = 1``).

Energy: with a Parseval bank (``A_n = B_n = 1``), the modulus and ``S_n = 1`` every layer conserves
energy exactly: ``sum_{n<N} |||Phi^n f|||^2 + sum_q ||U^N[q] f||^2 = ||f||^2``; with ``B_n <= 1`` and
averaging pools the left side is at most ``||f||^2`` (``energy_budget``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["FilterBank", "NONLINEARITIES", "energy_budget", "features", "frame_analysis", "gabor_bank",
           "littlewood_paley", "morlet_bank", "pool", "translation_bound", "translation_sensitivity"]

NONLINEARITIES = {"modulus": torch.abs, "relu": torch.relu, "tanh": torch.tanh}


@dataclass(frozen=True)
class FilterBank:
    """DFTs of the output filter ``chi`` (L,) and of the bank ``g`` (K, L) on signals of length L."""

    chi: Tensor
    g: Tensor

    @property
    def length(self) -> int:
        return int(self.chi.shape[-1])

    def bounds(self) -> tuple[float, float]:
        """Frame bounds ``(A, B)``: min and max of the Littlewood-Paley sum."""
        lp = littlewood_paley(self)
        return float(lp.min()), float(lp.max())


def _omega(length: int) -> Tensor:
    return 2 * math.pi * torch.fft.fftfreq(length, dtype=torch.float64)  # radians per sample in [-pi, pi)


def littlewood_paley(bank: FilterBank) -> Tensor:
    """``|chi^(omega)|^2 + sum_lambda |g_lambda^(omega)|^2`` on the DFT frequencies."""
    return bank.chi.abs().square() + bank.g.abs().square().sum(0)


def _normalise(chi: Tensor, g: Tensor, tight: bool) -> FilterBank:
    lp = chi.abs().square() + g.abs().square().sum(0)
    if float(lp.min()) <= 0:
        raise ConfigError("the bank leaves a frequency uncovered (Littlewood-Paley sum 0): it is not a frame")
    scale = lp.sqrt() if tight else lp.max().sqrt()  # tight: every frequency to 1 (Parseval); else B = 1
    return FilterBank((chi / scale).to(torch.complex128), (g / scale).to(torch.complex128))


def morlet_bank(length: int, scales: int = 4, *, xi: float = 0.75 * math.pi, sigma: float = 0.35,
                tight: bool = False) -> FilterBank:
    """Dyadic Gabor-like wavelets (Mallat's scattering; the paper's wavelet frames in 1-D): for
    ``j < J``, ``g_j^(omega) = exp(-(omega - xi 2^{-j})^2 / (2 (sigma xi 2^{-j})^2))`` and its mirror
    ``g_j^(-omega)`` (so real signals are covered on both sides), ``chi^(omega) =
    exp(-omega^2 / (2 (sigma xi 2^{-J+1})^2))``; scaled so that ``B = 1`` (``tight``: ``A = B = 1``)."""
    if length < 2 or scales < 1 or not xi > 0 or not sigma > 0:
        raise ConfigError(f"morlet_bank needs length >= 2, scales >= 1, xi > 0, sigma > 0; got {length}, {scales}, {xi}, {sigma}")
    w = _omega(length)
    rows = []
    for j in range(scales):
        c, s = xi * 2.0**-j, sigma * xi * 2.0**-j
        rows += [torch.exp(-((w - c) ** 2) / (2 * s * s)), torch.exp(-((w + c) ** 2) / (2 * s * s))]
    chi = torch.exp(-(w**2) / (2 * (sigma * xi * 2.0 ** (-scales + 1)) ** 2))
    return _normalise(chi, torch.stack(rows), tight)


def gabor_bank(length: int, n_bands: int = 8, *, width: float = 0.6, tight: bool = False) -> FilterBank:
    """Weyl-Heisenberg (Gabor) frame: Gaussian windows of one width at ``n_bands`` centre frequencies
    ``pi k / n_bands`` (``k = 1..n_bands``) and their mirrors; ``chi`` the window at 0. ``width`` is the
    window's standard deviation in units of the spacing ``pi / n_bands``."""
    if length < 2 or n_bands < 1 or not width > 0:
        raise ConfigError(f"gabor_bank needs length >= 2, n_bands >= 1, width > 0; got {length}, {n_bands}, {width}")
    w, step = _omega(length), math.pi / n_bands
    s = width * step
    rows = []
    for k in range(1, n_bands + 1):
        rows += [torch.exp(-((w - k * step) ** 2) / (2 * s * s)), torch.exp(-((w + k * step) ** 2) / (2 * s * s))]
    return _normalise(torch.exp(-(w**2) / (2 * s * s)), torch.stack(rows), tight)


def _conv(f: Tensor, h: Tensor) -> Tensor:
    """Circular convolution of real ``f (..., L)`` with filters given by their DFT ``h (..., L)``."""
    return torch.fft.ifft(torch.fft.fft(f.to(torch.complex128)) * h)


def frame_analysis(f: Tensor, bank: FilterBank) -> tuple[Tensor, Tensor]:
    """``(f * chi, {f * g_lambda})``: shapes ``(..., L)`` and ``(..., K, L)`` (complex)."""
    if f.shape[-1] != bank.length:
        raise ShapeError(f"signal length {f.shape[-1]} but the bank is built for length {bank.length}")
    return _conv(f, bank.chi), _conv(f[..., None, :], bank.g)


def pool(f: Tensor, s: int) -> Tensor:
    """``S^{1/2}`` times the mean over windows of ``S`` samples, keeping one sample per window."""
    if s < 1 or f.shape[-1] % s:
        raise ConfigError(f"pooling factor S must be >= 1 and divide the length {f.shape[-1]}; got S={s}")
    return math.sqrt(s) * f.reshape(*f.shape[:-1], f.shape[-1] // s, s).mean(-1)


def _check_layers(length: int, depth: int, pools: Sequence[int]) -> list[int]:
    if depth < 1 or len(pools) < depth - 1:
        raise ConfigError(f"need depth >= 1 and a pooling factor for each of the first depth-1 layers; got "
                          f"depth={depth}, pools={list(pools)}")
    lengths = [length]
    for s in pools[:depth - 1]:
        if s < 1 or lengths[-1] % s:
            raise ConfigError(f"pooling factor {s} does not divide the layer length {lengths[-1]}")
        lengths.append(lengths[-1] // s)
    return lengths


def features(f: Tensor, depth: int, *, pools: Sequence[int] = (), bank: str = "morlet",
             nonlinearity: str = "modulus", tight: bool = False, **bank_options: float) -> tuple[list[Tensor], Tensor]:
    """``[Phi^0(f), ..., Phi^{depth-1}(f)]`` for real signals ``f (B, L)``, each ``(B, paths, L_n)``
    real, and the propagated signals ``U^{depth}(f)`` (``(B, paths, L_depth)``; what the next layer would
    see). ``pools[n]`` is ``S_{n+1}``; layer ``n`` uses a bank of the same shape (``morlet_bank`` or
    ``gabor_bank``, options passed through) built for its length ``L_n``."""
    if nonlinearity not in NONLINEARITIES:
        raise ConfigError(f"unknown nonlinearity {nonlinearity!r}; choose one of {', '.join(NONLINEARITIES)}")
    if bank not in ("morlet", "gabor"):
        raise ConfigError(f"unknown bank {bank!r}; choose morlet or gabor")
    if f.dim() != 2:
        raise ShapeError(f"f must be (B, L) real signals, got shape {tuple(f.shape)}")
    pools = list(pools) + [1] * max(0, depth - len(pools))
    _check_layers(f.shape[-1], depth + 1, pools)
    make = morlet_bank if bank == "morlet" else gabor_bank
    m = NONLINEARITIES[nonlinearity]
    u = f.to(torch.float64)[:, None, :]  # (B, paths = 1, L)
    out = []
    for n in range(depth):
        b = make(u.shape[-1], tight=tight, **bank_options)
        low, high = frame_analysis(u, b)
        out.append(low.real)
        prop = m(high.abs() if nonlinearity == "modulus" else high.real)  # real filters' outputs on real signals
        u = pool(prop.reshape(u.shape[0], -1, u.shape[-1]), pools[n])
    return out, u


def energy_budget(f: Tensor, depth: int, **options) -> tuple[Tensor, Tensor]:
    """``(sum_{n<depth} |||Phi^n f|||^2 + ||U^depth f||^2, ||f||^2)`` per signal (module docstring)."""
    phis, u = features(f, depth, **options)
    total = sum(p.square().sum((1, 2)) for p in phis) + u.square().sum((1, 2))
    return total, f.to(torch.float64).square().sum(-1)


def translation_sensitivity(f: Tensor, t: int, depth: int, **options) -> tuple[Tensor, Tensor]:
    """``||Phi^n(T_t f) - Phi^n(f)||`` and ``||Phi^n(f)||`` for ``n < depth``: two ``(B, depth)`` tensors
    (``T_t f[k] = f[k - t]``, circular)."""
    a, _ = features(f, depth, **options)
    b, _ = features(torch.roll(f, t, -1), depth, **options)
    diff = torch.stack([(x - y).square().sum((1, 2)).sqrt() for x, y in zip(b, a)], 1)
    norm = torch.stack([x.square().sum((1, 2)).sqrt() for x in a], 1)
    return diff, norm


def translation_bound(length: int, t: int, depth: int, *, pools: Sequence[int] = (), bank: str = "morlet",
                      tight: bool = False, **bank_options: float) -> Tensor:
    """Discrete Theorem 1: ``|t| K_{n+1} / (S_1 ... S_n)`` for ``n < depth`` (times ``||f||``), valid when
    ``t`` is a multiple of ``S_1 ... S_n``."""
    pools = list(pools) + [1] * max(0, depth - len(pools))
    lengths = _check_layers(length, depth, pools)
    make = morlet_bank if bank == "morlet" else gabor_bank
    out, prod = [], 1
    for n in range(depth):
        chi = make(lengths[n], tight=tight, **bank_options).chi
        k = float((chi.abs() * _omega(lengths[n]).abs()).max())
        out.append(abs(t) * k / prod)
        prod *= pools[n]
    return torch.tensor(out, dtype=torch.float64)
