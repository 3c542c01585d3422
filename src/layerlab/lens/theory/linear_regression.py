r"""Error curves of high-dimensional linear regression trained by gradient descent.

Paper: Advani & Saxe, "High-dimensional dynamics of generalization error in neural networks",
2017, arXiv:1710.03667 (with Sompolinsky in Neural Networks 132, 2020).

Model (the paper's setting, our symbols in brackets). Inputs ``x in R^N`` with i.i.d. entries
``N(0, 1/N)``; a linear teacher ``y = wbar^T x + eps`` with ``wbar_i ~ N(0, sigma_wbar^2)`` and
noise ``eps ~ N(0, sigma_eps^2)``, signal-to-noise ratio ``SNR = sigma_wbar^2 / sigma_eps^2``;
a linear student ``yhat = w^T x`` from ``w_i(0) ~ N(0, sigma_w0^2)``; ``P`` training examples,
load ``alpha = P / N``. Training is gradient flow on ``(1/2) sum_mu (y^mu - yhat^mu)^2``,

    tau dw/dt = sum_mu (y^mu - w^T x^mu) x^mu,

or gradient descent ``w <- w + eta sum_mu (y^mu - w^T x^mu) x^mu`` [``eta``].

Spectrum. The input correlation ``Sigma^{xx} = sum_mu x^mu x^{mu T}`` has, as ``N, P -> inf``
at fixed ``alpha``, the Marchenko-Pastur eigenvalue density

    rho(lambda) = sqrt((lambda_+ - lambda)(lambda - lambda_-)) / (2 pi lambda)  on
    [lambda_-, lambda_+],  lambda_pm = (1 pm sqrt(alpha))^2,

plus a point mass ``(1 - alpha)`` at ``lambda = 0`` when ``alpha < 1`` (the frozen subspace:
directions the data never reach). Its mean is ``alpha``.

Error curves. In the eigenbasis each error mode relaxes independently: with
``f(lambda, t) = e^{-lambda t / tau}`` (flow) or ``(1 - eta lambda)^t`` (``t`` steps of GD),

    E_g(t) = (sigma_wbar^2 + sigma_w0^2) int rho(lambda) f^2 dlambda
             + sigma_eps^2 int rho(lambda) (1 - f)^2 / lambda dlambda + sigma_eps^2,

    E_t(t) = (1/alpha) int_{lambda>0} rho(lambda) (sigma_eps^2 + lambda (sigma_wbar^2 + sigma_w0^2)) f^2 dlambda
             + sigma_eps^2 max(0, 1 - 1/alpha),

where ``E_g = E[(y - yhat)^2]`` on a fresh example (so it includes the noise ``sigma_eps^2``) and
``E_t = (1/P) sum_mu (y^mu - yhat^mu)^2``; the first integral includes the point mass (where
``f = 1``). These follow from the per-mode solution
``e_i(t) = e_i(0) f + (eps_i / lambda_i)(1 - f)`` of the paper's analysis; the training-error
expression is our own bookkeeping of the same solution (residual modes in the row space of
the data decay as ``f``; the ``P - N`` residual directions outside it, ``alpha > 1``, keep their
noise). The limits ``t -> inf`` (``generalization_error_limit``, ``training_error_limit``) use
``int rho / lambda = alpha / (1 - alpha)`` (``alpha < 1``) or ``1 / (alpha - 1)`` (``alpha > 1``):

    E_g(inf) = (sigma_wbar^2 + sigma_w0^2) max(0, 1 - alpha) + sigma_eps^2 (1 + int rho / lambda),

which diverges at ``alpha = 1``: the overfitting peak of unregularized regression.

Quadrature (``mp_quadrature``). With ``lambda = lambda_- + (lambda_+ - lambda_-) sin^2 phi``,
``phi in [0, pi/2]``, the square-root edges disappear and ``rho dlambda =
(lambda_+ - lambda_-)^2 sin^2 phi cos^2 phi / (pi lambda) dphi``, smooth even at ``alpha = 1``
(where ``lambda_- = 0``). Near ``alpha = 1`` and at large ``t`` the integrands vary on scales
``sqrt(lambda_- / (lambda_+ - lambda_-))`` and ``(t (lambda_+ - lambda_-))^{-1/2}`` in ``phi``, all
at ``phi -> 0``, so ``[0, pi/2]`` is cut into panels graded geometrically towards 0 (halving
``levels`` times) with ``order``-point Gauss-Legendre on each. The defaults (``order = 16``,
``levels = 48``, 784 nodes) integrate these curves to about 1e-13 relative for ``alpha`` from
1e-3 to 1e3 (including ``alpha = 1``) and ``t / tau`` up to 1e12 (checked against
``scipy.integrate.quad`` in the tests).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...errors import ConfigError

__all__ = [
    "generalization_error",
    "generalization_error_limit",
    "mp_density",
    "mp_edges",
    "mp_quadrature",
    "training_error",
    "training_error_limit",
]


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha = P/N must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def mp_edges(alpha: float) -> tuple[float, float]:
    """Edges ``(lambda_-, lambda_+) = ((1 - sqrt(alpha))^2, (1 + sqrt(alpha))^2)`` of the bulk."""
    alpha = _check_alpha(alpha)
    r = math.sqrt(alpha)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def mp_density(lam: Tensor | float, alpha: float) -> Tensor:
    r"""Continuous part of the Marchenko-Pastur density of ``Sigma^{xx} = X X^T`` (paper's
    convention: entries of ``X`` (N x P) are ``N(0, 1/N)``, ``alpha = P/N``).

    ``rho(lambda) = sqrt((lambda_+ - lambda)(lambda - lambda_-)) / (2 pi lambda)`` inside
    ``[lambda_-, lambda_+]``, 0 outside. It integrates to ``min(1, alpha)``; for ``alpha < 1`` the
    missing ``1 - alpha`` is a point mass at 0, not included here. Same shape as ``lam``;
    float64 unless ``lam`` is a floating tensor (then its dtype and device).
    """
    lo, hi = mp_edges(alpha)
    out_dtype = lam.dtype if isinstance(lam, Tensor) and lam.is_floating_point() else torch.float64
    x = torch.as_tensor(lam, dtype=torch.float64, device=lam.device if isinstance(lam, Tensor) else None)
    inside = (x > lo) & (x < hi) & (x > 0)
    prod = ((hi - x) * (x - lo)).clamp_min(0)
    rho = torch.sqrt(prod) / (2 * math.pi * torch.where(inside, x, torch.ones_like(x)))
    return torch.where(inside, rho, torch.zeros_like(x)).to(out_dtype)


def mp_quadrature(
    alpha: float,
    *,
    order: int = 16,
    levels: int = 48,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Nodes ``lambda_j`` and weights ``w_j`` (float64) with
    ``sum_j w_j g(lambda_j) ~ int rho(lambda) g(lambda) dlambda`` over the continuous part of the
    Marchenko-Pastur law (the point mass at 0 is not included). See the module docstring for the
    substitution, the graded panels and the accuracy. Shapes ``((levels + 1) * order,)``.
    """
    alpha = _check_alpha(alpha)
    if order < 2 or levels < 0:
        raise ConfigError(f"need order >= 2 and levels >= 0, got order={order}, levels={levels}")
    lo, hi = mp_edges(alpha)
    width = hi - lo
    x, wx = np.polynomial.legendre.leggauss(order)
    # Panel edges pi/2 * 2^-k (k = 0..levels) and 0.
    edges = np.concatenate([(math.pi / 2) * 0.5 ** np.arange(levels + 1), [0.0]])
    right, left = edges[:-1, None], edges[1:, None]
    half = 0.5 * (right - left)
    phi = torch.as_tensor((left + half * (x + 1)).ravel(), dtype=torch.float64, device=device)
    dphi = torch.as_tensor((half * wx).ravel(), dtype=torch.float64, device=device)
    sin2 = torch.sin(phi) ** 2
    cos2 = torch.cos(phi) ** 2
    lam = lo + width * sin2
    weights = dphi * width**2 * sin2 * cos2 / (math.pi * lam)
    return lam, weights


def _variances(snr: float | None, teacher_var: float | None, noise_var: float, w0_var: float) -> tuple[float, float]:
    if (snr is None) == (teacher_var is None):
        raise ConfigError(
            "give exactly one of snr (teacher variance = snr * noise_var) and teacher_var; "
            f"got snr={snr!r}, teacher_var={teacher_var!r}"
        )
    if teacher_var is None:
        if not snr >= 0:
            raise ConfigError(f"snr must be >= 0, got {snr}")
        teacher_var = snr * noise_var
    for name, v in (("teacher_var", teacher_var), ("noise_var", noise_var), ("w0_var", w0_var)):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite variance >= 0, got {v}")
    return teacher_var + w0_var, noise_var


def _decay(lam: Tensor, t: Tensor, tau: float, eta: float | None) -> tuple[Tensor, Tensor]:
    """``f = e^{-lambda t/tau}`` or ``(1 - eta lambda)^t`` and ``1 - f``, accurate for small lambda t."""
    if eta is None:
        z = -lam * t / tau
    else:
        stable = eta * lam < 1
        base = torch.where(stable, -eta * lam, torch.zeros_like(lam))
        z = t * torch.log1p(base)
        unstable = torch.pow(1 - eta * lam, t)
        f = torch.where(stable, torch.exp(z), unstable)
        return f, torch.where(stable, -torch.expm1(z), 1 - unstable)
    return torch.exp(z), -torch.expm1(z)


def _prepare(t: Tensor | float, alpha: float, tau: float, eta: float | None, order: int, levels: int):
    alpha = _check_alpha(alpha)
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")
    if eta is not None and not eta > 0:
        raise ConfigError(f"eta must be > 0 (or None for gradient flow), got {eta}")
    device = t.device if isinstance(t, Tensor) else None
    out_dtype = t.dtype if isinstance(t, Tensor) and t.is_floating_point() else torch.float64
    t64 = torch.as_tensor(t, dtype=torch.float64, device=device)
    if bool((t64 < 0).any()) or bool(torch.isnan(t64).any()):
        raise ConfigError("training time t must be >= 0")
    lam, w = mp_quadrature(alpha, order=order, levels=levels, device=device)
    f, one_minus_f = _decay(lam, t64.unsqueeze(-1), tau, eta)
    return alpha, lam, w, f, one_minus_f, out_dtype


def generalization_error(
    t: Tensor | float,
    alpha: float,
    snr: float | None = None,
    *,
    teacher_var: float | None = None,
    noise_var: float = 1.0,
    w0_var: float = 0.0,
    tau: float = 1.0,
    eta: float | None = None,
    order: int = 16,
    levels: int = 48,
) -> Tensor:
    r"""Generalization error ``E_g(t) = E[(y - yhat)^2]`` on fresh data (noise included), in the
    ``N, P -> inf`` limit at load ``alpha = P/N``, by quadrature over the Marchenko-Pastur law.

    Args:
        t: training time(s) ``>= 0``: in units of ``tau`` for gradient flow (``eta=None``), or a
            number of gradient-descent steps of size ``eta``. Any shape.
        alpha: ``P / N``.
        snr: ``sigma_wbar^2 / sigma_eps^2`` (teacher variance ``snr * noise_var``); or give
            ``teacher_var`` instead (e.g. for a noise-free teacher, ``noise_var = 0``).
        noise_var: ``sigma_eps^2``.  w0_var: initial weight variance ``sigma_w0^2``.
        tau, eta: time constant of the flow; step size of gradient descent (overrides ``tau``).
        order, levels: quadrature resolution (see ``mp_quadrature``).

    Returns a tensor of ``t``'s shape (float64 unless ``t`` is a floating tensor), in units of
    the output variance.
    """
    signal, noise = _variances(snr, teacher_var, noise_var, w0_var)
    alpha, lam, w, f, one_minus_f, out_dtype = _prepare(t, alpha, tau, eta, order, levels)
    atom = max(0.0, 1.0 - alpha)
    bias = (w * f**2).sum(-1) + atom
    variance = (w * one_minus_f**2 / lam).sum(-1)
    return (signal * bias + noise * variance + noise).to(out_dtype)


def training_error(
    t: Tensor | float,
    alpha: float,
    snr: float | None = None,
    *,
    teacher_var: float | None = None,
    noise_var: float = 1.0,
    w0_var: float = 0.0,
    tau: float = 1.0,
    eta: float | None = None,
    order: int = 16,
    levels: int = 48,
) -> Tensor:
    r"""Training error ``E_t(t) = (1/P) sum_mu (y^mu - yhat^mu)^2`` in the same limit and with
    the same arguments as ``generalization_error``; ``E_t(0) = sigma_wbar^2 + sigma_w0^2 +
    sigma_eps^2`` and ``E_t(inf) = sigma_eps^2 max(0, 1 - 1/alpha)``."""
    signal, noise = _variances(snr, teacher_var, noise_var, w0_var)
    alpha, lam, w, f, _, out_dtype = _prepare(t, alpha, tau, eta, order, levels)
    fitted = (w * (noise + lam * signal) * f**2).sum(-1) / alpha
    return (fitted + noise * max(0.0, 1.0 - 1.0 / alpha)).to(out_dtype)


def _inverse_moment(alpha: float) -> float:
    """``int rho(lambda) / lambda dlambda`` over the continuous part; inf at alpha = 1."""
    if alpha == 1.0:
        return math.inf
    return alpha / (1.0 - alpha) if alpha < 1.0 else 1.0 / (alpha - 1.0)


def generalization_error_limit(
    alpha: float,
    snr: float | None = None,
    *,
    teacher_var: float | None = None,
    noise_var: float = 1.0,
    w0_var: float = 0.0,
) -> float:
    r"""``E_g(t -> inf)`` in closed form (gradient flow, or gradient descent with
    ``eta < 2 / lambda_+``): ``(sigma_wbar^2 + sigma_w0^2) max(0, 1 - alpha) + sigma_eps^2
    (1 + alpha / (1 - alpha))`` for ``alpha < 1`` and ``sigma_eps^2 (1 + 1 / (alpha - 1))`` for
    ``alpha > 1``; ``inf`` at ``alpha = 1`` when there is noise."""
    signal, noise = _variances(snr, teacher_var, noise_var, w0_var)
    alpha = _check_alpha(alpha)
    variance = 0.0 if noise == 0 else noise * _inverse_moment(alpha)
    return signal * max(0.0, 1.0 - alpha) + variance + noise


def training_error_limit(alpha: float, *, noise_var: float = 1.0) -> float:
    r"""``E_t(t -> inf) = sigma_eps^2 max(0, 1 - 1/alpha)``: zero when the student can
    interpolate (``alpha <= 1``), the least-squares residual ``(1 - N/P) sigma_eps^2`` otherwise."""
    alpha = _check_alpha(alpha)
    if not (math.isfinite(noise_var) and noise_var >= 0):
        raise ConfigError(f"noise_var must be a finite variance >= 0, got {noise_var}")
    return noise_var * max(0.0, 1.0 - 1.0 / alpha)
