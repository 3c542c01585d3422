r"""Inductive bias of a kernel hypothesis space against the input dimension of a synthetic task.

Paper: Boopathy, Yue, Hwang, Iyer & Fiete, "Towards Exact Computation of Inductive Bias", IJCAI
2024, arXiv:2406.15941 (abstract: "Consistent with prior results, our empirical results demonstrate
that higher dimensional tasks require greater inductive bias"). ``lens.inductive_bias``:
``I(ε) = -log2 P_h(e(h) <= ε)`` over hypotheses ``h`` drawn from a Gaussian process (RBF kernel)
conditioned on the training data, estimated by fitting a scaled noncentral chi-squared to the test
MSEs of ``n_samples`` sampled hypotheses.

Task (per input dimension ``d``; data drawn from ``seed``): inputs uniform in ``[0, 1]^d``, target
a ridge function ``y = sin(2π u^T x)`` along a random unit vector ``u`` (its variance does not
depend on ``d``), standardized by the training targets' mean and standard deviation;
``n_train`` training and ``n_test`` test points. Hypothesis space: the GP with unit prior variance
and lengthscale ``lengthscale`` (the same for every ``d``), interpolating the training data;
target error ``eps`` (in units of the target's variance). Reports the bits at every ``d``
(``bits_d<d>``), the mean sampled test MSE there, and ``slope``: the least-squares slope of bits
against ``log2 d`` (bits per doubling of the dimension); ``error = -slope``.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import inductive_bias as ib
from ...registry import Paper
from . import register_measure


def ridge_task(d: int, seed: int, n_train: int, n_test: int) -> tuple[torch.Tensor, ...]:
    """``x ~ U[0, 1]^d``, ``y = sin(2π u^T x)`` standardized on the training split (float64)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u = u / u.norm()
    x = torch.rand(n_train + n_test, d, generator=g, dtype=torch.float64)
    y = torch.sin(2 * math.pi * (x @ u))
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@register_measure("inductive_bias_dimension", metric="error",
                  paper=Paper("Towards Exact Computation of Inductive Bias", 2024, "2406.15941"))
def inductive_bias_dimension(seed: int, *, dims: tuple[int, ...] | list[int] = (2, 4, 8, 16), n_train: int = 100,
                             n_test: int = 50, n_samples: int = 1000, lengthscale: float = 0.3,
                             eps: float = 0.25) -> dict[str, float]:
    dims = tuple(int(d) for d in dims)
    if len(dims) < 2 or min(dims) < 1 or len(set(dims)) != len(dims) or n_train < 2 or n_test < 2 \
            or n_samples < 10 or not lengthscale > 0 or not eps > 0:
        raise ConfigError(f"inductive_bias_dimension: need >= 2 distinct dims >= 1, n_train, n_test >= 2, "
                          f"n_samples >= 10, lengthscale > 0, eps > 0; got {dims}, {n_train}, {n_test}, "
                          f"{n_samples}, {lengthscale}, {eps}")
    out: dict[str, float] = {}
    bits = []
    for d in dims:
        xtr, ytr, xte, yte = ridge_task(d, seed, n_train, n_test)
        e = ib.gp_hypothesis_errors(xtr, ytr, xte, yte, n_samples, lengthscale=lengthscale,
                                    generator=torch.Generator().manual_seed(seed))
        b = max(0.0, ib.inductive_bias(e, eps))  # -log2 of a probability (the fit can round 1 to 1 + 1e-16)
        bits.append(b)
        out[f"bits_d{d}"], out[f"mean_error_d{d}"] = b, float(e.mean())
    lx = [math.log2(d) for d in dims]
    mx, my = sum(lx) / len(lx), sum(bits) / len(bits)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, bits)) / sum((a - mx) ** 2 for a in lx)
    return {"error": -slope, "slope": slope, **out}
