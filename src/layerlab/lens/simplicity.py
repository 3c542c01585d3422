r"""Data that match only the low-order statistics of a data set: the probe of the distributional
simplicity bias.

Paper: Refinetti, Ingrosso & Goldt, "Neural networks trained with SGD learn distributions of
increasing complexity", ICML 2023, arXiv:2211.11567 (abstract; Sec. 4): networks trained with SGD
"initially classify their inputs using lower-order input statistics, like mean and covariance, and
exploit higher-order statistics only later during training". The test: evaluate the network along
training on *clones* of the test data that keep each class's first moments only,

    x ~ N(μ_c, Σ_c)          (Gaussian clone: class mean and covariance),
    x ~ N(μ_c, s_c² I)       (mean clone: class mean, isotropic spread of the same total variance),

whose accuracy follows the real accuracy early in training and falls behind it later.

``gaussian_clones`` draws them from a ``torch.Generator`` (class ``c`` gets as many samples as it
has rows, or ``n_per_class``); with ``exact=True`` the sample moments of each class equal the
data's exactly (the draws are whitened in-sample, then coloured by a square root of ``Σ_c``), the
form tested to float64 precision. ``Σ_c`` may be singular (constant pixels): the root is taken by
``eigh`` with negative rounding clamped to 0.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

ORDERS = ("gaussian", "mean")


def _sqrt_psd(c: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_clones(x: Tensor, y: Tensor, *, generator: torch.Generator, order: str = "gaussian",
                    n_per_class: int | None = None, exact: bool = True) -> tuple[Tensor, Tensor]:
    """(clone inputs, labels): per class, samples with the class's mean and covariance
    (``order="gaussian"``) or its mean and an isotropic covariance of equal trace (``"mean"``)."""
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {ORDERS}, got {order!r}")
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ShapeError(f"x must be (N, D) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    xs, ys = [], []
    for c in y.unique().tolist():
        xc = x[y == c].double()
        n = xc.shape[0] if n_per_class is None else n_per_class
        if n < 2 or (exact and n <= x.shape[1]):
            raise ConfigError(f"class {c}: need n > D = {x.shape[1]} samples for exact moments (or exact=False) "
                              f"and n >= 2; got n = {n}")
        mu = xc.mean(0)
        cov = torch.cov(xc.T, correction=0)  # the population moments of the class's rows
        if order == "mean":
            cov = torch.eye(x.shape[1], dtype=torch.float64) * cov.trace() / x.shape[1]
        z = torch.randn(n, x.shape[1], generator=generator, dtype=torch.float64)
        if exact:
            z = z - z.mean(0)
            z = z @ torch.linalg.inv(_sqrt_psd(torch.cov(z.T, correction=0)))  # sample mean 0, covariance I
        xs.append(mu + z @ _sqrt_psd(cov))
        ys.append(torch.full((n,), c, dtype=y.dtype))
    return torch.cat(xs).to(x.dtype), torch.cat(ys)
