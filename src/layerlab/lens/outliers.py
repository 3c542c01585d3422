r"""Outlier metrics of weights and activations: the max-to-mean ratio and the kurtosis.

Paper: Vlassis, Ashkboos, Volkova, Hoefler & Alistarh, "Beyond Outliers: A Study of Optimizers Under
Quantization", 2025, arXiv:2509.23500 (abstract verified): "outlier-related metrics, such as the
max-to-mean ratio (MMR) and Kurtosis, fail to predict the PTQ performance across different
optimizers", because the MMR captures "only isolated layer errors" and not how quantization errors
accumulate through the network. The paper's exact conventions (over which tensors, per row or per
tensor, how layers are aggregated) could not be read beyond its abstract; the definitions here are
the standard ones, with the reduction an argument:

.. math:: \mathrm{MMR}(x) = \frac{\max_i |x_i|}{\frac1n \sum_i |x_i|}, \qquad
          \mathrm{Kurt}(x) = \frac{\frac1n \sum_i (x_i - \bar x)^4}{\big(\frac1n \sum_i (x_i - \bar x)^2\big)^2}

(population moments; ``excess=True`` subtracts 3). Closed forms they are tested against: a one-hot
vector of length ``n`` has MMR ``n``; a constant vector MMR 1; a Gaussian has kurtosis 3, a uniform
9/5, a Laplace 6, a symmetric two-point (±a) 1, and ``k`` equal spikes among ``n`` entries (the rest
0), a scaled Bernoulli(p = k/n), ``1/(p(1 − p)) − 3``. MMR bounds the
relative RTN step: with per-row scale ``s = max|w|/q_max``, ``s / mean|w| = MMR / q_max``.

``weight_outliers(model)`` gives both metrics for every ``nn.Linear`` weight (whole tensor, and the
mean over rows of the per-row values: the per-output-channel view RTN quantizes in) and their means
over layers; ``activation_outliers(model, x)`` the same for each Linear's *input* on ``x`` (forward
hooks inside ``side_effect_free``). Both are side-effect free: they read weights without gradient
and restore the model's modes, RNG and gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ._util import side_effect_free

METRICS = ("mmr", "kurtosis")


def _check(x: Tensor, dim: int | None) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ConfigError(f"outlier metrics take a floating-point tensor, got {type(x).__name__} "
                          f"{getattr(x, 'dtype', '')}")
    if x.numel() == 0 or (dim is not None and x.shape[dim] == 0):
        raise ConfigError("outlier metrics need at least one entry along the reduced dimension")
    return x.detach().to(torch.promote_types(x.dtype, torch.float32))


def max_to_mean_ratio(x: Tensor, dim: int | None = None) -> Tensor:
    """``max|x| / mean|x|`` over all entries (``dim=None``) or along ``dim``; NaN where ``x`` is all zero."""
    a = _check(x, dim).abs()
    if dim is None:
        return a.max() / a.mean()
    return a.amax(dim=dim) / a.mean(dim=dim)


def kurtosis(x: Tensor, dim: int | None = None, *, excess: bool = False) -> Tensor:
    """Pearson's kurtosis ``m4 / m2^2`` with central population moments (3 for a Gaussian; minus 3
    with ``excess``), over all entries or along ``dim``; NaN for a constant tensor."""
    v = _check(x, dim)
    if dim is None:
        v, dim = v.reshape(-1), 0
    c = v - v.mean(dim=dim, keepdim=True)
    m2 = c.square().mean(dim=dim)
    m4 = c.square().square().mean(dim=dim)
    k = m4 / m2.square()
    return k - 3 if excess else k


def tensor_outliers(w: Tensor) -> dict[str, float]:
    """Both metrics of a tensor: over all entries (``mmr``, ``kurtosis``) and, for a matrix, the mean
    over its rows of the per-row values (``row_mmr``, ``row_kurtosis``)."""
    out = {"mmr": float(max_to_mean_ratio(w)), "kurtosis": float(kurtosis(w))}
    if w.ndim == 2:
        out["row_mmr"] = float(max_to_mean_ratio(w, dim=1).mean())
        out["row_kurtosis"] = float(kurtosis(w, dim=1).mean())
    return out


def _mean_over(per: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per.values())).keys()
    return {k: sum(v[k] for v in per.values()) / len(per) for k in keys}


def _linears(model: nn.Module) -> dict[str, nn.Module]:
    out = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not out:
        raise ConfigError("the model has no nn.Linear module; outlier metrics here read Linear weights and inputs")
    return out


def weight_outliers(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{linear name: tensor_outliers(weight)}`` for every ``nn.Linear``, plus ``"mean"``: each metric
    averaged over the layers."""
    with torch.no_grad():
        per = {n: tensor_outliers(m.weight) for n, m in _linears(model).items()}
    return {**per, "mean": _mean_over(per)}


def activation_outliers(model: nn.Module, x: Tensor) -> dict[str, dict[str, float]]:
    """The same metrics of each ``nn.Linear``'s input on ``x`` (flattened to (tokens, features); the
    row metrics are per token), in eval mode, plus their ``"mean"`` over layers."""
    linears = _linears(model)
    inputs: dict[str, Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: inputs.__setitem__(n, args[0].detach()))
             for n, m in linears.items()]
    try:
        with side_effect_free(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    per = {n: tensor_outliers(inputs[n].reshape(-1, inputs[n].shape[-1])) for n in linears if n in inputs}
    if not per:
        raise ConfigError("no nn.Linear ran in the forward pass of x")
    return {**per, "mean": _mean_over(per)}
