r"""Feature contamination: a two-layer ReLU network learns label-independent background features.

Paper: Zhang, Zhao, Chen, Jiang & Chen, "Feature Contamination: Neural Networks Learn Uncorrelated
Features and Fail to Generalize", 2024 (ICML), arXiv:2406.03345 (abstract; the structured feature
model of its theory and toy experiment: inputs made of core features, which carry the label, and
background features, which are independent of it; a two-layer ReLU network trained by gradient
methods grows weights along the background features through activation asymmetry, a linear model
does not, and the network then fails when the background distribution shifts).

Structured feature model (as in the paper's toy setting; our code). Labels ``y = +-1`` balanced;
core activations ``z_c = y u`` with ``u ~ U[0, 1]^{d_c}``; background activations ``z_b ~ U[0, 1]^{d_b}``
in training (out of distribution: ``z_b ~ -U[0, 1]^{d_b}``), independent of ``y``; the input
``x = [z_c, z_b] P`` with ``P`` (``(d_c + d_b) x d``) a random matrix with orthonormal rows.
Models: ``f(x) = sum_r a_r ReLU(<w_r, x>)`` with the output weights fixed at ``a_r = +-1/m`` (half each)
and the linear ``f(x) = <w, x>``; loss ``l(y f) = log(1 + exp(-y f))``.

Activation asymmetry (the mechanism, exactly). The gradient of the mean loss along a background
direction ``p_k`` (row ``d_c + k`` of ``P``) is

    ReLU neuron r:  dL/d<w_r, p_k> = (1/n) sum_i l'(y_i f_i) y_i a_r 1[<w_r, x_i> > 0] z_{b,ik},
    linear model:   dL/d<w, p_k>   = (1/n) sum_i l'(y_i f_i) y_i z_{b,ik}.

On a label-paired sample (every ``(u, z_b)`` drawn once with ``y = +1`` and once with ``y = -1``,
``paired_sample``) and ``<w, p_k> = 0`` for every ``k``, the linear model's ``y f = <w_c, u>`` is the
same for both members of a pair, so the two terms cancel exactly: gradient descent keeps its
background weights at 0 (``tests``). A ReLU neuron's indicator differs between the members of a
pair (a neuron aligned with the core fires on one class only), so its terms do not cancel and its
background weights grow: with ``l' < 0`` and ``z_b >= 0``, a neuron that fires on its own class
(``y a_r > 0``) gains positive weight along every background direction.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["background_gradient", "feature_weights", "logistic_loss", "orthonormal_rows", "paired_sample",
           "relu_forward", "sample", "train"]


def orthonormal_rows(k: int, d: int, generator: torch.Generator | None = None) -> Tensor:
    """A ``(k, d)`` matrix with orthonormal rows (``k <= d``), Haar-random (QR of a Gaussian)."""
    if not 1 <= k <= d:
        raise ConfigError(f"need 1 <= k <= d for k orthonormal rows in dimension d; got k={k}, d={d}")
    q, r = torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).T


def sample(n: int, core_dim: int, bg_dim: int, generator: torch.Generator | None = None, *,
           ood: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``(z_c, z_b, y)``: ``n`` examples (half per class) of the structured feature model."""
    if n < 2 or core_dim < 1 or bg_dim < 0:
        raise ConfigError(f"need n >= 2, core_dim >= 1, bg_dim >= 0; got n={n}, core_dim={core_dim}, bg_dim={bg_dim}")
    y = torch.cat([torch.ones(n // 2), -torch.ones(n - n // 2)]).to(torch.float64)
    u = torch.rand(n, core_dim, generator=generator, dtype=torch.float64)
    zb = torch.rand(n, bg_dim, generator=generator, dtype=torch.float64)
    return y[:, None] * u, -zb if ood else zb, y


def paired_sample(pairs: int, core_dim: int, bg_dim: int,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Each ``(u, z_b)`` once with ``y = +1`` and once with ``y = -1`` (``2 pairs`` examples)."""
    u = torch.rand(pairs, core_dim, generator=generator, dtype=torch.float64)
    zb = torch.rand(pairs, bg_dim, generator=generator, dtype=torch.float64)
    y = torch.cat([torch.ones(pairs), -torch.ones(pairs)]).to(torch.float64)
    return y[:, None] * torch.cat([u, u]), torch.cat([zb, zb]), y


def relu_forward(w: Tensor, a: Tensor, x: Tensor) -> Tensor:
    """``f(x) = sum_r a_r ReLU(<w_r, x>)``: ``w (m, d)``, ``a (m,)``, ``x (n, d)`` -> ``(n,)``."""
    if w.dim() != 2 or a.shape != w.shape[:1] or x.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ShapeError(f"need w (m, d), a (m,), x (n, d); got {tuple(w.shape)}, {tuple(a.shape)}, {tuple(x.shape)}")
    return torch.relu(x @ w.T) @ a


def logistic_loss(f: Tensor, y: Tensor) -> Tensor:
    """Mean ``log(1 + exp(-y f))``."""
    return torch.nn.functional.softplus(-y * f).mean()


def background_gradient(w: Tensor, a: Tensor | None, x: Tensor, y: Tensor, bg_basis: Tensor) -> Tensor:
    """``dL/d<w_r, p_k>`` by the closed form of the module docstring: ``(m, d_b)`` for the ReLU network
    (``a`` given), ``(1, d_b)`` for the linear model (``a = None``, ``w`` of shape ``(1, d)``)."""
    zb = x @ bg_basis.T  # (n, d_b): the background activations (rows of P orthonormal)
    pre = x @ w.T  # (n, m)
    if a is None:
        f, gate, scale = pre[:, 0], torch.ones_like(pre), torch.ones(w.shape[0], dtype=w.dtype)
    else:
        f, gate, scale = torch.relu(pre) @ a, (pre > 0).to(w.dtype), a
    lp = -torch.sigmoid(-y * f)  # l'(y f)
    return scale[:, None] * ((lp * y)[:, None] * gate).T @ zb / x.shape[0]


def feature_weights(w: Tensor, basis: Tensor, core_dim: int) -> tuple[Tensor, Tensor]:
    """Per row of ``w``: the norm of its projection on the core rows and on the background rows of ``P``."""
    coords = w @ basis.T
    return coords[:, :core_dim].norm(dim=1), coords[:, core_dim:].norm(dim=1)


def train(w: Tensor, a: Tensor | None, x: Tensor, y: Tensor, *, steps: int, lr: float) -> Tensor:
    """Full-batch gradient descent on the logistic loss over ``w`` (ReLU network with fixed ``a``, or
    the linear model with ``a = None`` and ``w (1, d)``); returns the trained ``w`` (a new tensor)."""
    if steps < 0 or not lr > 0:
        raise ConfigError(f"train needs steps >= 0 and lr > 0; got steps={steps}, lr={lr}")
    w = w.detach().clone().requires_grad_(True)
    for _ in range(steps):
        f = (x @ w.T)[:, 0] if a is None else relu_forward(w, a, x)
        (g,) = torch.autograd.grad(logistic_loss(f, y), [w])
        with torch.no_grad():
            w -= lr * g
    return w.detach()
