r"""Upper bounds on the local Lipschitz constant of a ReLU MLP by bound propagation.

Paper: Shi, Wang, Zhang, Kolter & Hsieh, "Efficiently Computing Local Lipschitz Constants of
Neural Networks via Bound Propagation", NeurIPS 2022, arXiv:2210.07394. For ``f`` on the
``l_inf`` ball ``B = {x : ||x - x_0||_inf <= eps}`` the local Lipschitz constant (input ``l_inf``,
output ``l_inf``) is the largest norm of a Clarke Jacobian,

    L(f, B) = sup_{x in B} sup_{J in ∂f(x)} ||J||_{inf},     ||J||_{inf} = max_i Σ_j |J_ij|,

and for ``f(x) = W_L σ(... σ(W_1 x + b_1) ...) + b_L`` the chain rule of the Clarke Jacobian gives
``J = W_L D_{L-1} W_{L-1} ... D_1 W_1`` with ``D_k = diag(σ'(z_k))``, ``σ'(z) = 1`` for ``z > 0``,
``0`` for ``z < 0`` and any value in ``[0, 1]`` at ``z = 0``. The paper bounds ``||J||`` by linear
bound propagation through this backward graph (with RecurJac as the special case with weaker
relaxations). Implemented here is the interval form of that propagation:

    1. interval bounds ``l_k <= z_k(x) <= u_k`` of the pre-activations on ``B`` (interval bound
       propagation: ``W [l, u]`` by centre ``W c`` and radius ``|W| r``);
    2. the derivative intervals ``D_k in [1[l_k > 0], 1[u_k > 0]]`` (the whole ``[0, 1]`` where the
       unit may switch, so the Clarke sets at ``z = 0`` are covered);
    3. the Jacobian interval ``[J^-, J^+]`` from the output backwards, one exact step per factor:
       an interval matrix times a non-negative diagonal interval, then times ``W_k`` in centre /
       radius form;
    4. ``L <= max_i Σ_j max(|J^-_ij|, |J^+_ij|)``.

It is exact for a linear network and on a ball where no unit switches, never below the true
constant (tested against dense sampling), and at most the global bound ``Π_k ||W_k||_inf``
(``global_bound``, the naive product of operator norms the paper compares with) when every
``D_k`` is the whole ``[0, 1]``. Lower bound for comparison: ``sampled_lower_bound`` (the largest
``||∇f(x)||`` over points of ``B``). Everything runs in float64 on copies of the weights.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .regions import mlp_weights


def _layers(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    if len(weights) != len(biases) or not weights:
        raise ConfigError(f"need one bias per weight and at least one layer, got {len(weights)} and {len(biases)}")
    out = [(W.detach().double(), b.detach().double()) for W, b in zip(weights, biases)]
    for k, ((W, b), (W2, _)) in enumerate(zip(out[:-1], out[1:])):
        if W2.shape[1] != W.shape[0] or b.shape != (W.shape[0],):
            raise ShapeError(f"layer {k}: weight {tuple(W.shape)} / bias {tuple(b.shape)} do not chain into "
                             f"the next weight {tuple(W2.shape)}")
    return out


def preactivation_bounds(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor,
                         eps: float) -> list[tuple[Tensor, Tensor]]:
    """``(l_k, u_k)`` for each hidden layer's pre-activations on the ``l_inf`` ball of radius
    ``eps`` around ``center`` (interval bound propagation)."""
    if not eps >= 0:
        raise ConfigError(f"eps must be >= 0, got {eps}")
    layers = _layers(weights, biases)
    c = center.detach().double().reshape(-1)
    if c.shape[0] != layers[0][0].shape[1]:
        raise ShapeError(f"center has {c.shape[0]} features, the first weight takes {layers[0][0].shape[1]}")
    r = torch.full_like(c, float(eps))
    bounds = []
    for W, b in layers[:-1]:
        zc, zr = W @ c + b, W.abs() @ r
        bounds.append((zc - zr, zc + zr))
        lo, hi = (zc - zr).clamp_min(0), (zc + zr).clamp_min(0)  # relu of the interval
        c, r = (lo + hi) / 2, (hi - lo) / 2
    return bounds


def jacobian_bounds(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor,
                    eps: float) -> tuple[Tensor, Tensor]:
    """``(J^-, J^+)``, entrywise bounds of every Clarke Jacobian of the MLP on the ball."""
    layers = _layers(weights, biases)
    bounds = preactivation_bounds(weights, biases, center, eps)
    lo = hi = layers[-1][0]  # J = W_L (D W)...: start at the output, exact
    for (W, _), (l, u) in zip(reversed(layers[:-1]), reversed(bounds)):
        dl, du = (l > 0).double(), (u >= 0).double()  # D in [dl, du]; u >= 0 keeps [0, 1] at a kink
        # [lo, hi] * d with d in [dl, du], d >= 0: the extremes are at the ends of both intervals
        cands = torch.stack([lo * dl, lo * du, hi * dl, hi * du])
        lo, hi = cands.amin(0), cands.amax(0)
        cen, rad = (lo + hi) / 2 @ W, (hi - lo) / 2 @ W.abs()
        lo, hi = cen - rad, cen + rad
    return lo, hi


def local_lipschitz_bound(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float) -> float:
    """Upper bound on ``L(f, B)`` (``l_inf -> l_inf``): ``max_i Σ_j max(|J^-_ij|, |J^+_ij|)``."""
    lo, hi = jacobian_bounds(weights, biases, center, eps)
    return float(torch.maximum(lo.abs(), hi.abs()).sum(dim=1).amax())


def global_bound(weights: Sequence[Tensor]) -> float:
    """``Π_k ||W_k||_inf`` (max absolute row sum): the naive global Lipschitz bound of a ReLU MLP."""
    out = 1.0
    for W in weights:
        out *= float(W.detach().double().abs().sum(dim=1).amax())
    return out


def jacobian_norm(weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor) -> Tensor:
    """``||J(x)||_inf`` at each row of ``x`` ``(N, in)`` (the Jacobian where no unit sits at 0)."""
    layers = _layers(weights, biases)
    h = x.detach().double()
    J = torch.eye(h.shape[1], dtype=torch.float64).expand(h.shape[0], -1, -1)
    for W, b in layers[:-1]:
        z = h @ W.T + b
        on = (z > 0).double()
        J = on[:, :, None] * (W @ J)
        h = z.clamp_min(0)
    J = layers[-1][0] @ J
    return J.abs().sum(dim=2).amax(dim=1)


def sampled_lower_bound(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float,
                        n_samples: int = 10_000, generator: torch.Generator | None = None) -> float:
    """``max ||J(x)||_inf`` over ``n_samples`` points of the ball: the corners (a random sign
    vector times ``eps``, where the norm is often largest) and uniform points, half each."""
    if n_samples < 2:
        raise ConfigError(f"n_samples must be >= 2, got {n_samples}")
    c = center.detach().double().reshape(1, -1)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    half = n_samples // 2
    corners = torch.randint(2, (half, c.shape[1]), generator=g).double() * 2 - 1
    inside = torch.rand(n_samples - half, c.shape[1], generator=g, dtype=torch.float64) * 2 - 1
    x = c + eps * torch.cat([corners, inside])
    return float(jacobian_norm(weights, biases, torch.cat([c, x])).amax())


def model_bound(model: nn.Module, center: Tensor, eps: float) -> float:
    """``local_lipschitz_bound`` of an ``nn.Sequential(Linear, ReLU, ..., Linear)``."""
    return local_lipschitz_bound(*mlp_weights(model), center, eps)
