r"""In-context linear regression by one linear self-attention layer: the global minimum and its risk.

Paper: Zhang, Frei & Bartlett, "Trained Transformers Learn Linear Models In-Context", 2023,
arXiv:2306.09927 (Sec. 3: the LSA model and its initialization; Theorem 4.1: gradient flow
converges to a global minimum; its prediction and prediction error on new prompts).

Setting (the paper's notation). A task ``w ~ N(0, I_d)``; covariates ``x_i, x_query ~ N(0, Lambda)``;
labels ``y_i = <w, x_i>`` (no noise). A prompt of ``N`` examples is the embedding

    E = [[x_1 ... x_N x_query], [y_1 ... y_N 0]]  in R^{(d+1) x (N+1)},

and the linear self-attention layer is ``f_LSA(E) = E + W^{PV} E (E^T W^{KQ} E) / N``; its
prediction is the bottom-right entry ``y_hat = [f_LSA(E)]_{d+1, N+1}``. Training minimizes
``L = (1/2) E[(y_hat - y_query)^2]``. Gradient flow from the paper's initialization
``W^{PV}(0) = sigma [[0, 0], [0, 1]]``, ``W^{KQ}(0) = sigma [[Theta Theta^T, 0], [0, 0]]``
(``||Theta Theta^T||_F = 1``) converges to ``W^{PV} = [[0, 0], [0, c]]``,
``W^{KQ} = [[c^{-1} Gamma*, 0], [0, 0]]`` with

    Gamma* = ( (1 + 1/N) Lambda + tr(Lambda) / N  I_d )^{-1},

whose prediction on a prompt of length ``M`` is ``y_hat = x_query^T Gamma* (1/M) sum_i y_i x_i``.

Risk (our derivation of the prediction error, checked against Monte Carlo in the tests). For a
predictor ``y_hat = w^T Lambda_hat Gamma x_query`` with ``Lambda_hat = (1/M) sum_i x_i x_i^T`` and
the Gaussian fourth moment ``E[Lambda_hat A Lambda_hat] = (1 + 1/M) Lambda A Lambda +
tr(A Lambda) Lambda / M`` (``A`` symmetric),

    R(Gamma; M) = E[(y_hat - y_query)^2]
                = (1 + 1/M) tr(Lambda Gamma Lambda Gamma^T Lambda) + tr(Gamma Lambda Gamma^T Lambda) tr(Lambda) / M
                  - 2 tr(Gamma Lambda^2) + tr(Lambda).

Its minimizer at ``M = N`` is ``Gamma*`` (setting ``dR/dGamma = 0``), and the minimum is
``R* = tr(Lambda) - tr(Gamma* Lambda^2)``; for ``Lambda = I``, ``R* = d (d + 1) / (N + d + 1)``.
Terms of the full LSA parameterization outside the ``Gamma`` block only add prediction variance
uncorrelated with the target (they are even in ``w`` or independent of it), so ``R*`` is also the
minimum over all ``(W^{PV}, W^{KQ})``. The training loss of the paper is ``R / 2``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["global_minimum", "global_minimum_risk", "lsa_predict", "lsa_risk", "paper_init", "prompt_embedding"]


def _covariance(lam: Tensor) -> Tensor:
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if lam.dim() == 1:
        lam = torch.diag(lam)
    if lam.dim() != 2 or lam.shape[0] != lam.shape[1]:
        raise ShapeError(f"Lambda must be a (d, d) covariance or a (d,) diagonal; got shape {tuple(lam.shape)}")
    if not torch.allclose(lam, lam.T) or float(torch.linalg.eigvalsh(lam).min()) <= 0:
        raise ConfigError("Lambda must be symmetric positive definite (the covariates' covariance)")
    return lam


def _check_length(n: int, what: str) -> None:
    if int(n) != n or n < 1:
        raise ConfigError(f"{what} must be an integer >= 1 (examples in the prompt); got {n!r}")


def global_minimum(lam: Tensor, n: int) -> Tensor:
    """``Gamma* = ((1 + 1/N) Lambda + tr(Lambda)/N I)^{-1}`` (Theorem 4.1); ``lam`` is ``Lambda``
    (d x d) or its diagonal (d,); float64."""
    lam = _covariance(lam)
    _check_length(n, "N")
    d = lam.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    return torch.linalg.inv((1 + 1 / n) * lam + torch.trace(lam) / n * eye)


def lsa_risk(gamma: Tensor, lam: Tensor, m: int) -> Tensor:
    """``R(Gamma; M) = E[(x_q^T Gamma (1/M) sum_i y_i x_i - <w, x_q>)^2]`` for ``w ~ N(0, I)``,
    ``x ~ N(0, Lambda)``, prompts of ``M`` examples (module docstring)."""
    lam = _covariance(lam)
    _check_length(m, "M")
    gamma = torch.as_tensor(gamma, dtype=torch.float64)
    if gamma.shape != lam.shape:
        raise ShapeError(f"Gamma is {tuple(gamma.shape)} but Lambda is {tuple(lam.shape)}; both must be d x d")
    a = gamma @ lam @ gamma.T
    return ((1 + 1 / m) * torch.trace(lam @ a @ lam) + torch.trace(a @ lam) * torch.trace(lam) / m
            - 2 * torch.trace(gamma @ lam @ lam) + torch.trace(lam))


def global_minimum_risk(lam: Tensor, n: int, m: int | None = None) -> Tensor:
    """``R(Gamma*; M)`` with ``Gamma*`` from training prompts of length ``N`` (``M = N`` default);
    at ``M = N`` it equals ``tr(Lambda) - tr(Gamma* Lambda^2)``."""
    return lsa_risk(global_minimum(lam, n), lam, n if m is None else m)


def prompt_embedding(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
    """``E`` of shape ``(B, d+1, N+1)`` from ``x: (B, N, d)``, ``y: (B, N)``, ``x_query: (B, d)``."""
    if x.dim() != 3 or y.shape != x.shape[:2] or x_query.shape != (x.shape[0], x.shape[2]):
        raise ShapeError(f"need x (B, N, d), y (B, N), x_query (B, d); got {tuple(x.shape)}, {tuple(y.shape)}, "
                         f"{tuple(x_query.shape)}")
    top = torch.cat([x, x_query[:, None, :]], 1)  # (B, N+1, d)
    bottom = torch.cat([y, torch.zeros_like(y[:, :1])], 1)  # (B, N+1)
    return torch.cat([top, bottom[..., None]], 2).transpose(1, 2)


def lsa_predict(e: Tensor, w_pv: Tensor, w_kq: Tensor) -> Tensor:
    """``y_hat = [E + W^{PV} E (E^T W^{KQ} E) / N]_{d+1, N+1}`` for a batch ``E: (B, d+1, N+1)``.

    Reference form: the whole ``f_LSA(E)``. (Only its last column's last entry is read; the
    measure's training loop computes it as ``W^{PV}_{d+1,:} (E E^T / N) W^{KQ} E_{:, N+1}``,
    the same number.)"""
    n = e.shape[-1] - 1
    f = e + w_pv @ e @ (e.transpose(1, 2) @ w_kq @ e) / n
    return f[:, -1, -1]


def paper_init(d: int, sigma: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``W^{PV}(0) = sigma [[0, 0], [0, 1]]`` and ``W^{KQ}(0) = sigma [[Theta Theta^T, 0], [0, 0]]``
    with ``Theta`` Gaussian (d x d), scaled so that ``||Theta Theta^T||_F = 1`` (float64)."""
    if not sigma > 0 or d < 1:
        raise ConfigError(f"paper_init needs d >= 1 and sigma > 0; got d={d}, sigma={sigma}")
    theta = torch.randn(d, d, generator=generator, dtype=torch.float64)
    tt = theta @ theta.T
    w_pv = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    w_pv[d, d] = sigma
    w_kq = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    w_kq[:d, :d] = sigma * tt / torch.linalg.matrix_norm(tt)
    return w_pv, w_kq
