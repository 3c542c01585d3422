r"""Infinite-width kernels of a 2-layer ReLU network: arc-cosine kernels, the NNGP and the NTK.

Papers:

- Cho & Saul, "Kernel Methods for Deep Learning", NIPS 2009 (no arXiv id): the arc-cosine
  kernels
  ``k_n(x, y) = 2 ∫ dw (2π)^{-d/2} e^{-‖w‖²/2} Θ(wᵀx) Θ(wᵀy) (wᵀx)ⁿ (wᵀy)ⁿ
  = (1/π) ‖x‖ⁿ ‖y‖ⁿ J_n(θ)``, with ``θ`` the angle between ``x`` and ``y``, ``Θ`` the Heaviside
  step and ``J_0 = π − θ``, ``J_1 = sin θ + (π − θ) cos θ``,
  ``J_2 = 3 sin θ cos θ + (π − θ)(1 + 2 cos² θ)``. Mind the factor 2 in front of the Gaussian
  integral: ``k_n = 2 E_w[...]`` with ``w ~ N(0, I)``, so ``k_0(x, x) = 1``.
- Jacot, Gabriel & Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural
  Networks", 2018, arXiv:1806.07572: the NTK ``Θ(x, x') = Σ_p ∂_p f(x) ∂_p f(x')`` of a network
  in NTK parameterization converges, as the width grows, to a deterministic kernel.
- Arora, Du, Hu, Li, Salakhutdinov & Wang, "On Exact Computation with an Infinitely Wide Neural
  Net", 2019, arXiv:1904.11955: the ReLU NTK written with arc-cosine kernels.

The network (``TwoLayerReLU``), NTK parameterization, both layers trained::

    f(x) = (1/√m) Σ_{j=1..m} a_j relu(w_jᵀ x̃),   w_j ~ N(0, I), a_j ~ N(0, 1) i.i.d.

with ``x̃ = x`` (``bias=False``) or ``x̃ = [x; 1]`` (``bias=True``: a hidden bias
``b_j ~ N(0, 1)`` is the last coordinate of ``w_j``).

Derivation of its infinite-width kernels. The parameter gradients are
``∂f/∂a_j = relu(w_jᵀx̃)/√m`` and ``∂f/∂w_j = a_j relu'(w_jᵀx̃) x̃/√m``, so the empirical NTK is
an average of ``m`` i.i.d. terms::

    Θ_m(x, x') = (1/m) Σ_j relu(w_jᵀx̃) relu(w_jᵀx̃') + (x̃ᵀx̃') (1/m) Σ_j a_j² Θ(w_jᵀx̃) Θ(w_jᵀx̃')

By the law of large numbers (``E[a²] = 1``, ``a`` independent of ``w``) it converges to::

    Θ_∞(x, x') = E_w[relu(wᵀx̃) relu(wᵀx̃')] + (x̃ᵀx̃') E_w[Θ(wᵀx̃) Θ(wᵀx̃')]
               = k_1(x̃, x̃')/2 + (x̃ᵀx̃') k_0(x̃, x̃')/2
               = (1/2π) [‖x̃‖‖x̃'‖ (sin θ + (π − θ) cos θ) + (x̃ᵀx̃') (π − θ)]

(the 1/2 undoes Cho & Saul's factor 2). ``Θ_m`` is unbiased for every ``m`` and its
fluctuations shrink like ``m^{-1/2}`` (central limit theorem). The NNGP kernel, the covariance
of the outputs at initialization, is ``E[f(x) f(x')] = E[a²] E_w[relu(wᵀx̃) relu(wᵀx̃')] =
k_1(x̃, x̃')/2``. On the diagonal: ``Θ_∞(x, x) = ‖x̃‖²`` and ``K(x, x) = ‖x̃‖²/2``.

Angles are computed as ``θ = 2 atan2(‖x̂ − ŷ‖, ‖x̂ + ŷ‖)`` (unit vectors, differences taken
directly), which stays accurate near ``θ = 0`` where ``arccos`` of a rounded cosine loses half
the digits. A zero input has no direction; its angle to anything is taken as ``π/2``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError

ORDERS = (0, 1, 2)


def _pair(x1: Tensor, x2: Tensor | None, who: str) -> tuple[Tensor, Tensor]:
    if x1.ndim != 2:
        raise ShapeError(f"{who}: x1 must be (N1, d), got shape {tuple(x1.shape)}; reshape to (N, d)")
    if x2 is None:
        return x1, x1
    if x2.ndim != 2 or x2.shape[1] != x1.shape[1]:
        raise ShapeError(
            f"{who}: x2 must be (N2, d) with d = {x1.shape[1]} like x1, got shape {tuple(x2.shape)}"
        )
    return x1, x2


def _with_bias(x1: Tensor, x2: Tensor, bias: bool) -> tuple[Tensor, Tensor]:
    if not bias:
        return x1, x2
    one = torch.ones_like(x1[:1, :1])
    return torch.cat([x1, one.expand(len(x1), 1)], 1), torch.cat([x2, one.expand(len(x2), 1)], 1)


def _norms_angle(x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Norms (N1, 1), (1, N2) and angles θ (N1, N2) in [0, π]."""
    n1 = torch.linalg.vector_norm(x1, dim=1, keepdim=True)
    n2 = torch.linalg.vector_norm(x2, dim=1, keepdim=True)
    u1 = x1 / n1.clamp_min(torch.finfo(x1.dtype).tiny)
    u2 = x2 / n2.clamp_min(torch.finfo(x2.dtype).tiny)
    mode = "donot_use_mm_for_euclid_dist"  # direct differences: exact 0 for identical rows
    minus = torch.cdist(u1, u2, compute_mode=mode)
    plus = torch.cdist(u1, -u2, compute_mode=mode)
    return n1, n2.T, 2.0 * torch.atan2(minus, plus)


def _arccos_from(n1: Tensor, n2: Tensor, theta: Tensor, n: int) -> Tensor:
    c, s, rest = torch.cos(theta), torch.sin(theta), math.pi - theta
    if n == 0:
        return rest / math.pi
    if n == 1:
        j = s + rest * c
    else:
        j = 3.0 * s * c + rest * (1.0 + 2.0 * c * c)
    return (n1 * n2) ** n * j / math.pi


def arccos_kernel(x1: Tensor, x2: Tensor | None = None, n: int = 1) -> Tensor:
    r"""Cho & Saul's arc-cosine kernel of order ``n`` ∈ {0, 1, 2}.

    ``k_n(x, y) = (1/π) ‖x‖ⁿ ‖y‖ⁿ J_n(θ) = 2 E_{w~N(0,I)}[Θ(wᵀx) Θ(wᵀy) (wᵀx)ⁿ (wᵀy)ⁿ]``
    (see the module docstring for ``J_n``).

    Args:
        x1: (N1, d) inputs.
        x2: (N2, d) inputs; ``None`` means ``x1``.
        n: the order (0: step, 1: ReLU, 2: squared ReLU activation).

    Returns:
        (N1, N2) kernel matrix in the inputs' dtype and device (units of ‖x‖^{2n}).
    """
    if n not in ORDERS:
        raise ConfigError(f"arccos_kernel: order n must be one of {ORDERS}, got {n!r}")
    x1, x2 = _pair(x1, x2, "arccos_kernel")
    return _arccos_from(*_norms_angle(x1, x2), n)


def relu_nngp(x1: Tensor, x2: Tensor | None = None, *, bias: bool = False) -> Tensor:
    r"""Output covariance ``E[f(x) f(x')] = k_1(x̃, x̃')/2`` of ``TwoLayerReLU`` at initialization.

    Args:
        x1: (N1, d) inputs; x2: (N2, d) inputs or ``None`` (= ``x1``).
        bias: include the hidden bias (``x̃ = [x; 1]``), matching ``TwoLayerReLU(bias=True)``.

    Returns:
        (N1, N2) NNGP kernel, any width (it is exact in expectation, not only in the limit).
    """
    x1, x2 = _with_bias(*_pair(x1, x2, "relu_nngp"), bias)
    return 0.5 * arccos_kernel(x1, x2, 1)


def relu_ntk(x1: Tensor, x2: Tensor | None = None, *, bias: bool = False) -> Tensor:
    r"""Infinite-width NTK of ``TwoLayerReLU`` (both layers trained, NTK parameterization).

    ``Θ_∞(x, x') = k_1(x̃, x̃')/2 + (x̃ᵀx̃') k_0(x̃, x̃')/2`` (derivation in the module docstring);
    it equals ``lens.ntk.empirical(TwoLayerReLU(d, m), x1, x2, output="trace")`` as ``m → ∞``.

    Args:
        x1: (N1, d) inputs; x2: (N2, d) inputs or ``None`` (= ``x1``).
        bias: include the hidden bias (``x̃ = [x; 1]``), matching ``TwoLayerReLU(bias=True)``.

    Returns:
        (N1, N2) kernel matrix in the inputs' dtype (units of ‖x‖²).
    """
    x1, x2 = _with_bias(*_pair(x1, x2, "relu_ntk"), bias)
    n1, n2, theta = _norms_angle(x1, x2)
    return 0.5 * (_arccos_from(n1, n2, theta, 1) + (x1 @ x2.T) * _arccos_from(n1, n2, theta, 0))


class TwoLayerReLU(nn.Module):
    r"""``f(x) = (1/√m) Σ_j a_j relu(w_jᵀ x + b_j)``, the network whose limits are above.

    NTK parameterization: ``w_j ~ N(0, I_d)``, ``a_j ~ N(0, 1)`` and (``bias=True``)
    ``b_j ~ N(0, 1)``, all i.i.d. standard normal; the ``1/√m`` is in the forward pass, not in
    the initialization, so ``lens.ntk.empirical`` of this module converges to ``relu_ntk``.
    Parameters (the paper's symbols): ``w`` (m, d), ``a`` (m,), ``b`` (m,) if ``bias``.

    Shape: ``(*, in_features) -> (*, 1)``.

    Initialization draws from ``generator`` (a CPU ``torch.Generator``; ``None`` uses a fresh
    one seeded 0, so the global RNG is never touched) in float64, then casts to ``dtype``.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        generator: torch.Generator | None = None,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if int(in_features) < 1 or int(width) < 1:
            raise ConfigError(
                f"TwoLayerReLU: in_features and width must be >= 1, got {in_features}, {width}"
            )
        self.in_features, self.width = int(in_features), int(width)
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        dtype = dtype or torch.get_default_dtype()

        def draw(*shape: int) -> nn.Parameter:
            t = torch.randn(*shape, generator=generator, dtype=torch.float64)
            return nn.Parameter(t.to(device=device, dtype=dtype))

        self.w = draw(self.width, self.in_features)
        self.a = draw(self.width)
        self.b = draw(self.width) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"TwoLayerReLU: expected inputs (*, {self.in_features}), got shape {tuple(x.shape)}"
            )
        h = x @ self.w.T
        if self.b is not None:
            h = h + self.b
        return (torch.relu(h) @ self.a).unsqueeze(-1) / math.sqrt(self.width)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, width={self.width}, bias={self.b is not None}"
