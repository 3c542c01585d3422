r"""Vertical translation invariance of a scattering-type network (Morlet frame, modulus, pooling).

Paper: Wiatowski & Bölcskei, "A Mathematical Theory of Deep Convolutional Neural Networks for
Feature Extraction", 2015, arXiv:1512.06293, Theorem 1: the features become progressively more
translation-invariant with depth, ``|||Phi^n(T_t f) - Phi^n(f)||| <= 2 pi |t| K / (S_1 ... S_n) ||f||``
(``lens.theory.scattering``, discrete form).

The measurement draws ``signals`` random smooth periodic signals of length ``length`` (six
Gaussian-windowed cosine bumps of random centre, width 2-22 samples, chirp and sign), runs the
extractor (``morlet_bank`` with ``scales`` dyadic scales, B = 1; modulus; average pooling by
``pool`` at every layer) on them and on their shifts by ``shift`` samples (a multiple of ``pool``
to the power ``depth - 1``, so every layer's covariance is exact), and reads per layer ``n`` the
relative sensitivity ``rel_n = mean ||Phi^n(T_t f) - Phi^n(f)|| / mean ||Phi^n(f)||``.
``error = max_n rel_{n+1} / rel_n`` (< 1: each layer is more invariant than the one below).
Beside it: ``bound_ratio`` (the largest ``||Phi^n(T_t f) - Phi^n(f)|| / ||f||`` over the discrete
Theorem 1 bound; <= 1 always) and the same ratio ``nopool_error`` with ``S = 1`` (no pooling:
the paper's invariance then rests on ``chi`` alone).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import scattering as sc
from ...registry import Paper
from . import register_measure


def smooth_signals(count: int, length: int, generator: torch.Generator, bumps: int = 6) -> torch.Tensor:
    """Random smooth periodic signals ``(count, length)``: Gaussian-windowed cosines."""
    x = torch.arange(length, dtype=torch.float64)
    out = torch.zeros(count, length, dtype=torch.float64)
    for _ in range(bumps):
        centre = torch.rand(count, 1, generator=generator, dtype=torch.float64) * length
        width = 2 + 20 * torch.rand(count, 1, generator=generator, dtype=torch.float64)
        amp = torch.randn(count, 1, generator=generator, dtype=torch.float64)
        chirp = torch.rand(count, 1, generator=generator, dtype=torch.float64) * math.pi
        d = (x - centre + length / 2) % length - length / 2
        out += amp * torch.exp(-d**2 / (2 * width**2)) * torch.cos(chirp * d / width)
    return out


@register_measure("scattering_translation", metric="error",
                  paper=Paper("A Mathematical Theory of Deep Convolutional Neural Networks for Feature Extraction",
                              2015, "1512.06293"))
def scattering_translation(seed: int, *, length: int = 1024, depth: int = 4, shift: int = 8, pool: int = 2,
                           scales: int = 4, signals: int = 8) -> dict[str, float]:
    if depth < 2 or pool < 1 or signals < 1 or shift % (pool ** (depth - 1)) or length % (pool ** depth):
        raise ConfigError(f"scattering_translation: need depth >= 2, pool >= 1, signals >= 1, shift a multiple of "
                          f"pool^(depth-1) and length a multiple of pool^depth; got depth={depth}, pool={pool}, "
                          f"shift={shift}, length={length}")
    g = torch.Generator().manual_seed(seed)
    f = smooth_signals(signals, length, g)
    out: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for tag, s in (("", pool), ("nopool_", 1)):
            diff, norm = sc.translation_sensitivity(f, shift, depth, pools=[s] * depth, scales=scales)
            rel = diff.mean(0) / norm.mean(0)
            for n in range(depth):
                out[f"{tag}rel_{n}"] = float(rel[n])
            out[f"{tag}error"] = float((rel[1:] / rel[:-1]).max())
            if not tag:
                bound = sc.translation_bound(length, shift, depth, pools=[s] * depth, scales=scales)
                out["bound_ratio"] = float((diff / f.norm(dim=1, keepdim=True) / bound).max())
    finally:
        torch.set_num_threads(threads)
    return out
