r"""The stochastic diagonal estimator of Bekas, Kokiopoulou & Saad on a network's exact Hessian.

Paper: C. Bekas, E. Kokiopoulou, Y. Saad, "An estimator for the diagonal of a matrix", Applied
Numerical Mathematics 57(11-12), 2007 (no arXiv id; its full text was not reachable here: the
estimator below is checked against secondary descriptions of it, e.g. SimPEG's
``estimate_diagonal`` and the least-squares derivation of the same ratio). The estimator of
``diag(A)`` from ``s`` products with vectors ``v_k``:

    D^s = [Σ_k v_k ⊙ A v_k] ⊘ [Σ_k v_k ⊙ v_k],

whose ``i``-th entry is ``A_ii + Σ_{j≠i} A_ij (Σ_k v_k,i v_k,j) / (Σ_k v_k,i²)``: the error comes
only from the off-diagonal entries of row ``i`` weighed by inner products of rows of the probe
matrix ``[v_1 ... v_s]``. With Rademacher probes (``v_k,i = ±1``, ``Σ_k v_k,i² = s``; PyHessian's
and ``lens.curvature.diagonal``'s choice) this gives (our derivation from that expression, since
``E[v_i v_j] = δ_ij`` and the products ``v_i v_j``, ``j ≠ i``, are pairwise uncorrelated with unit
variance): ``E[D^s_i] = A_ii`` (unbiased) and ``Var[D^s_i] = Σ_{j≠i} A_ij² / s``; an entry whose
row has no off-diagonal mass is exact for any ``s``.

The measurement trains a tanh MLP (``64 -> width -> 10``, float64) by ``train_steps`` full-batch
GD steps (step ``lr``) on the cross-entropy of the first ``n_train`` digits (centred), computes its
Hessian exactly with ``torch.func.hessian`` (forward-over-reverse on the flat parameter vector,
independent of ``lens``), and one ``lens.curvature.hessian_diagonal`` estimate with ``n_samples``
Rademacher probes (Hessian-vector products, ``block`` at a time). Over the ``P'`` entries with
``v_i = Σ_{j≠i} H_ij² > 0``:

* unbiasedness: ``z_i = (D_i - H_ii) / √(v_i / n_samples)``; ``z_sq_mean = mean_i z_i²`` is 1 in
  expectation (it grows with any bias larger than the standard error);
* the variance: the estimate's own per-probe sample variance, ``n_samples · standard_error_i²``,
  against the closed form ``v_i``: ``variance_ratio = mean_i`` of their ratio, 1 in expectation;
* the remaining entries (``v_i = 0``; e.g. weights of pixels that are 0 in every image):
  ``zero_variance_error = max |D_i - H_ii| / max |H_ii|``, 0 up to roundoff.

``error = max(|z_sq_mean - 1|, |variance_ratio - 1|, zero_variance_error)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call
from torch.func import hessian as func_hessian

from ...errors import ConfigError
from ...lens import curvature
from ...registry import Paper
from ...tasks.digits import Digits
from . import register_measure
from .batch_hessian import centred_digits_tanh_mlp

Batch = tuple[torch.Tensor, torch.Tensor]


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def exact_hessian(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The Hessian ``(P, P)`` of the mean cross-entropy on ``batch`` with respect to the parameters
    flattened in ``named_parameters()`` order, by ``torch.func.hessian``."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = theta[i:i + s.numel()].reshape(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(model, parts, (batch[0],)), batch[1])

    return func_hessian(loss)(flat)


def diagonal_statistics(estimate: curvature.Diagonal, H: torch.Tensor) -> dict[str, float]:
    """The three checks of the module docstring for one estimate of ``diag(H)``."""
    d = H.diagonal()
    v = (H * H).sum(1) - d * d  # Σ_{j≠i} H_ij²
    scale = float(d.abs().max())
    keep = v > 1e-12 * float(v.max())
    m = estimate.n_samples
    z_sq = (estimate.values - d).square()[keep] / (v[keep] / m)
    ratio = (m * estimate.standard_error.square())[keep] / v[keep]
    zero = float((estimate.values - d)[~keep].abs().max()) / scale if bool((~keep).any()) else 0.0
    z_sq_mean, variance_ratio = float(z_sq.mean()), float(ratio.mean())
    return {"error": max(abs(z_sq_mean - 1), abs(variance_ratio - 1), zero), "z_sq_mean": z_sq_mean,
            "variance_ratio": variance_ratio, "zero_variance_error": zero, "entries": float(keep.sum()),
            "zero_variance_entries": float((~keep).sum()),
            "relative_error": float((estimate.values - d).norm() / d.norm())}


@register_measure("hutchinson_diagonal", metric="error",
                  paper=Paper("An estimator for the diagonal of a matrix", 2007))
def hutchinson_diagonal(seed: int, *, n_train: int = 128, width: int = 12, train_steps: int = 100, lr: float = 0.5,
                        n_samples: int = 2000, block: int = 500) -> dict[str, float]:
    if n_train < 10 or width < 1 or train_steps < 0 or not lr > 0 or n_samples < 2 or block < 1:
        raise ConfigError(f"hutchinson_diagonal: need n_train >= 10, width >= 1, train_steps >= 0, lr > 0, "
                          f"n_samples >= 2, block >= 1; got {n_train}, {width}, {train_steps}, {lr}, {n_samples}, {block}")
    full = Digits().train_batch(0, torch.Generator())
    if n_train > len(full):
        raise ConfigError(f"n_train must be at most {len(full)}, got {n_train}")
    x, y, model = centred_digits_tanh_mlp(full, n_train, width, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and kind to a shared machine
    try:
        params = list(model.parameters())
        for _ in range(train_steps):
            grads = torch.autograd.grad(cross_entropy(model, (x, y)), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(lr * g)
        H = exact_hessian(model, (x, y))
        est = curvature.hessian_diagonal(model, cross_entropy, [(x, y)], n_samples=n_samples, block=block,
                                         generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            loss = float(cross_entropy(model, (x, y)))
    finally:
        torch.set_num_threads(threads)
    out = diagonal_statistics(est, H)
    out["loss"] = loss
    out["params"] = float(H.shape[0])
    out["symmetry_error"] = float((H - H.T).abs().max()) / max(float(H.abs().max()), math.ulp(1.0))
    return out
