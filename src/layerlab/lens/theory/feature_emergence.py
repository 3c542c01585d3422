r"""The energy whose local maxima are the features a 2-layer network learns on group arithmetic (Li_2).

Paper: Tian, "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking", 2025,
arXiv:2509.21519 (abstract; the Li_2 framework: (I) lazy learning, (II) independent feature
learning, (III) interactive feature learning). A two-layer network ``F = sigma(X W^T)`` (hidden
nodes ``w_j``), top layer ``V``, square loss and weight decay: in stage (I) the top layer fits the
random hidden features, and with weight decay the gradient ``G_F`` backpropagated to the hidden
layer carries the target; in stage (II) each node then follows *exactly the gradient ascent of an
energy* ``E``, whose local maxima are the emerging features.

Here, for one node ``w`` with inputs ``X`` (``n x d``) and targets ``Y`` (one-hot, ``n x M``) centred
over the classes, ``Y~ = Y - 1/M`` (as in the author's code: ``Y_train - 1/group_order``),

    E(w) = (1/2) || Y~^T sigma(X w) ||^2,     grad E(w) = X^T ( sigma'(X w) * Y~ Y~^T sigma(X w) ).

Why this ``E`` (derived here, which is how it was checked; the paper's body was not readable in this
session -- the abstract, the author's README and training script were): with the top layer at its
ridge optimum ``V* = (F^T F + eta I)^{-1} F^T Y~`` (weight decay ``eta`` on ``V``), the gradient that
reaches node ``j`` is ``-dL/dw_j = X^T (sigma'(X w_j) * (R V*^T)[:, j])`` with residual ``R = Y~ - F V*``;
as ``eta -> infinity``, ``eta V* -> F^T Y~`` and ``R -> Y~``, so ``eta (-dL/dw_j) -> grad E(w_j)``: each node
ascends its own ``E``, independently of the others (``backprop_gradient`` computes the finite-``eta``
form; the test checks the limit).

Modular addition, quadratic ``sigma(x) = x^2``, the full table of ``M^2`` pairs, ``w = [u; v]`` (weights
on the one-hot codes of ``a`` and ``b``): ``sum_{a+b=c} (u_a + v_b)^2 = ||u||^2 + ||v||^2 + 2 (u * v)(c)``
(circular convolution) and the centring removes its mean over ``c``, so by Parseval

    E(u, v) = 2M sum_{k != 0} |u^_k|^2 |v^_k|^2        (unitary DFT, ``fourier_energy``).

On the unit sphere ``||u||^2 + ||v||^2 = 1`` with odd ``M`` this is at most ``M/4``, attained exactly by
the Fourier features ``u_a = A cos(2 pi k a/M + phi)``, ``v_b = A cos(2 pi k b/M + psi)``, ``k != 0``,
``||u|| = ||v||`` (any ``k``, any phases: a real vector's power at ``k`` is shared with ``-k``, and a
feature spread over two frequencies is a saddle, since moving power to either raises ``E``); these
are the only local maxima. (Even ``M``: the Nyquist feature ``(-1)^a`` gives ``M/2``.) This is the
paper's "local maxima are the emerging features" made exact for the cyclic group; ``energy_ascent``
(Riemannian gradient ascent on the sphere) finds them from random starts.

Not covered: the scaling law of the number of samples at which such maxima persist when ``E`` is
computed on a subset of the table (the author's code puts the critical training fraction at
``c log M / M``), and stage (III).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["ACTIVATIONS", "backprop_gradient", "centred_targets", "energy", "energy_ascent", "energy_gradient",
           "fourier_energy", "fourier_feature", "max_energy", "modular_addition_data", "ridge_readout"]

ACTIVATIONS = ("square", "relu")


def _sigma(z: Tensor, activation: str) -> tuple[Tensor, Tensor]:
    """``sigma(z)`` and ``sigma'(z)``."""
    if activation == "square":
        return z * z, 2.0 * z
    if activation == "relu":
        return torch.relu(z), (z > 0).to(z.dtype)
    raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def modular_addition_data(M: int, pairs: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One-hot inputs ``X = [e_a, e_b]`` (``n x 2M``, float64) and labels ``(a + b) mod M`` of the given
    ``(a, b)`` pairs (``n x 2`` long; default: the whole table, ``a`` major)."""
    if not isinstance(M, int) or M < 2:
        raise ConfigError(f"M (the modulus) must be an integer >= 2, got {M!r}")
    if pairs is None:
        pairs = torch.cartesian_prod(torch.arange(M), torch.arange(M))
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ShapeError(f"pairs must be (n, 2), got shape {tuple(pairs.shape)}")
    a, b = pairs[:, 0].long(), pairs[:, 1].long()
    x = torch.cat([F.one_hot(a, M), F.one_hot(b, M)], 1).to(torch.float64)
    return x, (a + b) % M


def centred_targets(labels: Tensor, M: int) -> Tensor:
    """``Y~ = onehot(labels) - 1/M`` (``n x M``)."""
    return F.one_hot(labels.long(), M).to(torch.float64) - 1.0 / M


def _check(w: Tensor, x: Tensor, y_tilde: Tensor, activation: str = "square") -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if x.ndim != 2 or y_tilde.ndim != 2 or x.shape[0] != y_tilde.shape[0] or w.shape[-1] != x.shape[1]:
        raise ShapeError(f"need w (..., d), X (n, d), Y~ (n, M); got {tuple(w.shape)}, {tuple(x.shape)}, "
                         f"{tuple(y_tilde.shape)}")


def energy(w: Tensor, x: Tensor, y_tilde: Tensor, activation: str = "square") -> Tensor:
    """``E(w) = (1/2) ||Y~^T sigma(X w)||^2`` for each node ``w`` (shape ``(..., d) -> (...)``)."""
    _check(w, x, y_tilde, activation)
    f, _ = _sigma(w.to(x.dtype) @ x.T, activation)  # (..., n)
    return 0.5 * (f @ y_tilde).square().sum(-1)


def energy_gradient(w: Tensor, x: Tensor, y_tilde: Tensor, activation: str = "square") -> Tensor:
    """``grad E(w) = X^T (sigma'(X w) * Y~ Y~^T sigma(X w))`` (shape of ``w``)."""
    _check(w, x, y_tilde, activation)
    f, df = _sigma(w.to(x.dtype) @ x.T, activation)
    return (df * ((f @ y_tilde) @ y_tilde.T)) @ x


def fourier_energy(u: Tensor, v: Tensor) -> Tensor:
    """``2M sum_{k != 0} |u^_k|^2 |v^_k|^2`` (unitary DFT over the last dim): ``E`` of ``w = [u; v]`` on the
    full modular-addition table with ``sigma(x) = x^2``."""
    if u.shape != v.shape:
        raise ShapeError(f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    m = u.shape[-1]
    pu = torch.fft.fft(u.to(torch.float64), dim=-1, norm="ortho").abs().square()
    pv = torch.fft.fft(v.to(torch.float64), dim=-1, norm="ortho").abs().square()
    return 2.0 * m * (pu * pv)[..., 1:].sum(-1)


def max_energy(M: int) -> float:
    """``max E`` over unit ``w`` on the full table with ``sigma(x) = x^2``: ``M/4`` (odd ``M``), ``M/2`` (even)."""
    if not isinstance(M, int) or M < 3:
        raise ConfigError(f"M must be an integer >= 3, got {M!r}")
    return M / 4.0 if M % 2 else M / 2.0


def fourier_feature(M: int, k: int, phase_a: float = 0.0, phase_b: float = 0.0) -> Tensor:
    """The unit-norm node ``[cos(2 pi k a/M + phase_a); cos(2 pi k b/M + phase_b)]`` (``0 < k < M/2``)."""
    if not isinstance(M, int) or M < 3 or not isinstance(k, int) or not 0 < k < M / 2:
        raise ConfigError(f"need an integer M >= 3 and a frequency 0 < k < M/2, got M={M!r}, k={k!r}")
    j = torch.arange(M, dtype=torch.float64)
    w = torch.cat([torch.cos(2 * math.pi * k * j / M + phase_a), torch.cos(2 * math.pi * k * j / M + phase_b)])
    return w / w.norm()


def ridge_readout(f: Tensor, y_tilde: Tensor, eta: float) -> Tensor:
    """The top layer at its ridge optimum, ``V* = (F^T F + eta I)^{-1} F^T Y~`` (``K x M``)."""
    if not eta > 0:
        raise ConfigError(f"eta (the top layer's weight decay) must be > 0, got {eta!r}")
    k = f.shape[1]
    return torch.linalg.solve(f.T @ f + eta * torch.eye(k, dtype=f.dtype), f.T @ y_tilde)


def backprop_gradient(w: Tensor, x: Tensor, y_tilde: Tensor, eta: float, activation: str = "square") -> Tensor:
    """``-dL/dW`` for ``L = (1/2)||Y~ - F V*||^2 + (eta/2)||V*||^2``, ``F = sigma(X W^T)``, at the ridge optimum
    ``V*`` (``K x d``; ``V*`` is held fixed, which is the total derivative since ``dL/dV = 0`` there)."""
    if w.ndim != 2:
        raise ShapeError(f"W must be (K, d), got shape {tuple(w.shape)}")
    _check(w, x, y_tilde, activation)
    f, df = _sigma(x @ w.to(x.dtype).T, activation)  # (n, K)
    v = ridge_readout(f, y_tilde, eta)
    g_f = (y_tilde - f @ v) @ v.T  # backpropagated gradient G_F (n, K)
    return (df * g_f).T @ x


def energy_ascent(w0: Tensor, x: Tensor, y_tilde: Tensor, *, steps: int = 2000, lr: float = 0.05,
                  activation: str = "square") -> Tensor:
    """Riemannian gradient ascent of ``E`` on the unit sphere from each row of ``w0`` (``K x d``): project
    the gradient on the tangent space, step ``lr * g / E(w)`` (scale-free), renormalize."""
    if steps < 0 or not lr > 0:
        raise ConfigError(f"energy_ascent: need steps >= 0 and lr > 0, got {steps}, {lr}")
    w = w0.to(torch.float64) / w0.to(torch.float64).norm(dim=-1, keepdim=True)
    for _ in range(steps):
        g = energy_gradient(w, x, y_tilde, activation)
        g = g - (g * w).sum(-1, keepdim=True) * w
        e = energy(w, x, y_tilde, activation).clamp_min(1e-300)
        w = w + lr * g / e[..., None]
        w = w / w.norm(dim=-1, keepdim=True)
    return w
