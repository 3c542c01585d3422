r"""Diffusion spectral entropy as a noise-resistant measure of intrinsic dimension.

Paper: Liao, Liu et al., "Assessing Neural Network Representations During Training Using
Noise-Resilient Diffusion Spectral Entropy", 2023, arXiv:2312.04823 (abstract: DSE and DSMI "form
noise-resistant measures of intrinsic dimensionality and relationship strength in high-dimensional
simulated data"; Sec. 4.1). ``DSE = -Σ λ̃ log2 λ̃``, ``λ̃ = |λ|^t / Σ|λ|^t`` for the eigenvalues of
the diffusion operator (``lens.diffusion_entropy``).

The measurement draws, for each intrinsic dimension ``k`` in ``dims``, ``n`` points uniform in the
cube ``[0, side]^k``, embeds them isometrically in ``ambient`` dimensions (a random orthonormal
``k``-frame), adds isotropic Gaussian noise of standard deviation ``noise`` in every ambient
coordinate, and computes DSE (bandwidth ``sigma``, ``t`` steps). It reports ``dse_<k>``,
``increasing`` = the fraction of consecutive dimensions where DSE grows, and ``error = 1 -
increasing``; and the classic Shannon entropy of the same points with ``bins`` bins per coordinate
over the first ``10`` ambient coordinates (``cse_<k>``, the baseline the paper shows saturating).
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import diffusion_entropy, information
from ...registry import Paper
from . import register_measure
from ._fit import one_thread


@register_measure("dse_intrinsic_dimension", metric="error",
                  paper=Paper("Assessing Neural Network Representations During Training Using Noise-Resilient "
                              "Diffusion Spectral Entropy", 2023, "2312.04823"))
def dse_intrinsic_dimension(seed: int, *, dims: tuple[int, ...] | list[int] = (1, 2, 4, 8), n: int = 400,
                            ambient: int = 100, side: float = 10.0, noise: float = 0.1, sigma: float = 1.0,
                            t: int = 1, bins: int = 2) -> dict[str, float]:
    dims = [int(k) for k in dims]
    if len(dims) < 2 or min(dims) < 1 or max(dims) > ambient or n < 2 or not side > 0 or not noise >= 0:
        raise ConfigError(f"dse_intrinsic_dimension: need two or more dims in [1, ambient], n >= 2, side > 0, "
                          f"noise >= 0; got {dims}, {n}, {side}, {noise}")
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    with one_thread():
        for k in dims:
            frame, _ = torch.linalg.qr(torch.randn(ambient, k, generator=gen, dtype=torch.float64))
            u = torch.rand(n, k, generator=gen, dtype=torch.float64) * side
            z = u @ frame.T + noise * torch.randn(n, ambient, generator=gen, dtype=torch.float64)
            out[f"dse_{k}"] = diffusion_entropy.dse(z, t=t, sigma=sigma)
            first = z[:, :10]
            edges = [information.bin_edges(c, bins, "fixed") for c in first.T]
            cells = torch.stack([information.binned(c, e) for c, e in zip(first.T, edges)], 1)
            out[f"cse_{k}"] = information.entropy(information.codes(cells))
    values = [out[f"dse_{k}"] for k in dims]
    increasing = sum(b > a for a, b in zip(values, values[1:])) / (len(values) - 1)
    return {"error": 1.0 - increasing, "increasing": increasing, **out}
