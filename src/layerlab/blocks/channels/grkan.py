"""Group-rational KAN (GR-KAN) of the Kolmogorov-Arnold Transformer (KAT).

Paper: Yang & Wang, "Kolmogorov-Arnold Transformer", 2024 (ICLR 2025), arXiv:2409.10594.
A GR-KAN layer is ``W F(x) + b`` with a learnable rational function ``F`` shared by the channels
of each group; the ``grkan`` channel mixer stacks two of them in place of the MLP.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_last_dim, wide_dtype
from ._two_layer import TwoLayerChannel

__all__ = [
    "GRKAN",
    "GRKANLayer",
    "GroupRational",
    "fitted_rational",
    "group_rational",
    "group_rational_reference",
    "rational_second_moment",
]

KAT_PAPER = Paper("Kolmogorov-Arnold Transformer", 2024, "2409.10594")

FIT_RANGE = (-6.0, 6.0)  # KAT fits on [-3, 3]; see fitted_rational for why wider
IDENTITY_EPS = 0.01
_TARGETS = {
    "gelu": lambda x: F.gelu(x),  # exact (erf) GELU, as the "mlp" block
    "swish": F.silu,
}
INITS = ("identity", *_TARGETS)


def _rational_and_jacobian(x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``F = P / (1 + |Q|)`` at ``x (N,)`` and its Jacobian ``(N, m+1+n)`` in ``(a, b)``."""
    powers = x.unsqueeze(-1) ** torch.arange(max(a.numel(), b.numel() + 1), dtype=x.dtype)
    p = powers[:, : a.numel()] @ a
    q = powers[:, 1 : b.numel() + 1] @ b
    den = 1.0 + q.abs()
    d_a = powers[:, : a.numel()] / den[:, None]
    d_b = -(p * torch.sign(q) / den**2)[:, None] * powers[:, 1 : b.numel() + 1]
    return p / den, torch.cat([d_a, d_b], dim=1)


@functools.lru_cache(maxsize=None)
def fitted_rational(target: str, m: int = 5, n: int = 4) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Coefficients ``(a_0..a_m), (b_1..b_n)`` of ``F(x) = P(x) / (1 + |Q(x)|)`` that match
    ``target`` on ``FIT_RANGE = [-6, 6]``. Deterministic, computed once per process.

    KAT fits on [-3, 3]; a GELU fitted there (ours as well as the paper's coefficients) turns
    over just outside it (F(10) ≈ -6 here), which hidden pre-activations reach in training.
    Fitted on [-6, 6], the max error on [-3, 3] is 3.7e-3 (GELU) and 7e-5 (Swish), and the
    tails stay tame (|F(x)| <= 1.01 |x| for 3 <= |x| <= 100; F ~ const * x as |x| -> inf is forced by
    deg P = deg Q + 1).

    - ``"identity"``: exact, ``F(x) = x(1 + ε x^e) / (1 + ε x^e) = x`` with ``e`` the largest even
      power in ``[2, min(n, m - 1)]`` and ``ε = 0.01``: ``Q = ε x^e >= 0`` keeps ``sign(Q) = 1``, so
      the gradient reaches every ``b`` (with ``b = 0`` it would be ``sign(0) = 0`` forever).
    - ``"gelu"`` (exact erf form) and ``"swish"`` (SiLU): least squares on 2001 equispaced points of
      ``[-6, 6]``: first the linearized problem ``P(x) - f(x) Q(x) ≈ f(x)`` (linear in a, b), then
      Levenberg–Marquardt on the true residual ``P / (1 + |Q|) - f`` in float64.
    """
    if target not in INITS:
        raise ConfigError(f"unknown rational init {target!r}; valid: {', '.join(INITS)}")
    a = np.zeros(m + 1)
    b = np.zeros(n)
    if target == "identity":
        a[1] = 1.0
        even = [e for e in range(2, min(n, m - 1) + 1) if e % 2 == 0]
        if even:
            e = even[-1]
            a[e + 1], b[e - 1] = IDENTITY_EPS, IDENTITY_EPS
        return tuple(a.tolist()), tuple(b.tolist())

    x = torch.linspace(*FIT_RANGE, 2001, dtype=torch.float64)
    f = _TARGETS[target](x)
    powers = x.unsqueeze(-1) ** torch.arange(max(m, n) + 1, dtype=torch.float64)
    lin = torch.cat([powers[:, : m + 1], -f[:, None] * powers[:, 1 : n + 1]], dim=1)
    theta = torch.linalg.lstsq(lin, f.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)

    def loss(th: Tensor) -> Tensor:
        val, _ = _rational_and_jacobian(x, th[: m + 1], th[m + 1 :])
        return ((val - f) ** 2).sum()

    lam, best = 1e-3, loss(theta)
    for _ in range(200):
        val, jac = _rational_and_jacobian(x, theta[: m + 1], theta[m + 1 :])
        grad = jac.T @ (val - f)
        jtj = jac.T @ jac
        while lam < 1e12:
            step = torch.linalg.solve(jtj + lam * torch.diag(jtj.diagonal().clamp_min(1e-12)), -grad)
            trial = loss(theta + step)
            if trial < best:
                theta, best, lam = theta + step, trial, max(lam / 3.0, 1e-12)
                break
            lam *= 4.0
        else:
            break
    return tuple(theta[: m + 1].tolist()), tuple(theta[m + 1 :].tolist())


def rational_second_moment(a: Sequence[float], b: Sequence[float], n_points: int = 80) -> float:
    """``E[F(x)^2]`` for ``x ~ N(0, 1)`` by Gauss–Hermite quadrature (float64)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    p = np.polynomial.polynomial.polyval(nodes, np.asarray(a, dtype=np.float64))
    q = np.polynomial.polynomial.polyval(nodes, np.concatenate([[0.0], np.asarray(b, dtype=np.float64)]))
    values = p / (1.0 + np.abs(q))
    return float((weights * values**2).sum() / math.sqrt(2.0 * math.pi))


def group_rational(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    r"""``F_g(x_c) = P_g(x_c) / (1 + |Q_g(x_c)|)`` with the coefficients of channel c's group.

    ``P_g(x) = a_0 + a_1 x + ... + a_m x^m``, ``Q_g(x) = b_1 x + ... + b_n x^n`` (Horner), the C
    channels split into ``g`` contiguous groups of ``C / g``. Shapes: ``x (..., C)``,
    ``numerator (g, m+1)``, ``denominator (g, n)`` -> ``(..., C)``; evaluated in float32 or wider.
    """
    g, c = numerator.shape[0], x.shape[-1]
    cdt = wide_dtype(x.dtype)
    xg = x.to(cdt).unflatten(-1, (g, c // g))
    a, b = numerator.to(cdt), denominator.to(cdt)
    p = a[:, -1:] * torch.ones_like(xg)
    for k in range(a.shape[1] - 2, -1, -1):
        p = p * xg + a[:, k : k + 1]
    q = b[:, -1:] * torch.ones_like(xg)
    for k in range(b.shape[1] - 2, -1, -1):
        q = q * xg + b[:, k : k + 1]
    return (p / (1.0 + (q * xg).abs())).flatten(-2)


def group_rational_reference(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    r"""The plain form of ``group_rational``: each channel picks its group's coefficients and
    ``F(x) = Σ_{i=0}^{m} a_i x^i / (1 + |Σ_{i=1}^{n} b_i x^i|)`` is summed power by power.
    Same shapes and dtype rule; tested equal to the Horner form."""
    g, c = numerator.shape[0], x.shape[-1]
    cdt = wide_dtype(x.dtype)
    xc = x.to(cdt)
    group_of = torch.arange(c, device=x.device) // (c // g)  # channel -> its group
    a, b = numerator.to(cdt)[group_of], denominator.to(cdt)[group_of]  # (C, m+1), (C, n)
    p = sum(a[:, i] * xc**i for i in range(a.shape[1]))
    q = sum(b[:, i - 1] * xc**i for i in range(1, b.shape[1] + 1))
    return p / (1.0 + q.abs())


def _check_rational_options(name: str, groups: int, m: int, n: int) -> None:
    if int(groups) != groups or groups < 1:
        raise ConfigError(f"{name}: groups must be an integer >= 1, got {groups!r}")
    if int(m) != m or m < 1 or int(n) != n or n < 1:
        raise ConfigError(f"{name}: the degrees must be integers m >= 1 (numerator) and n >= 1 (denominator); "
                          f"got m={m!r}, n={n!r} (KAT uses m=5, n=4)")


class GroupRational(nn.Module):
    r"""Group-wise rational activation of KAT: channel c goes through ``F_{g(c)}``.

    ``F_g(x) = (a_{g,0} + ... + a_{g,m} x^m) / (1 + |b_{g,1} x + ... + b_{g,n} x^n|)``, the
    "safe" Padé form of the paper (the absolute value of the whole polynomial keeps the
    denominator >= 1: no poles). Channels are split into ``groups`` contiguous groups of
    ``channels / groups`` that share one coefficient set, numerator and denominator (the
    authors' kernel differs: see ``GRKAN``).

    Parameters: ``numerator (groups, m+1)``, ``denominator (groups, n)``, every group initialized
    to ``fitted_rational(init, m, n)``. Shape ``(..., channels) -> (..., channels)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        init: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_rational_options("GroupRational", groups, m, n)
        if channels % groups:
            raise ConfigError(f"GroupRational: channels ({channels}) must be a multiple of groups ({groups})")
        if init not in INITS:
            raise ConfigError(f"GroupRational: unknown init {init!r}; valid: {', '.join(INITS)}")
        factory = {"device": device, "dtype": dtype}
        self.channels, self.groups, self.m, self.n, self.init = int(channels), int(groups), int(m), int(n), init
        self.numerator = nn.Parameter(torch.empty(groups, m + 1, **factory))
        self.denominator = nn.Parameter(torch.empty(groups, n, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        a, b = fitted_rational(self.init, self.m, self.n)
        with torch.no_grad():
            self.numerator.copy_(torch.tensor(a, dtype=torch.float64).expand(self.groups, -1))
            self.denominator.copy_(torch.tensor(b, dtype=torch.float64).expand(self.groups, -1))

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.channels, "channels")
        return group_rational(x, self.numerator, self.denominator).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, m={self.m}, n={self.n}, init={self.init!r}"


class GRKANLayer(nn.Module):
    r"""One group-rational KAN layer (KAT, arXiv:2409.10594): ``GR-KAN(x) = W F(x) + bias``.

    Per edge ``φ_ij(x_i) = w_ij F_{g(i)}(x_i)``: the rational ``F`` of input i's group, then a
    linear map ``W (out, in)``. Shape ``(..., in) -> (..., out)``.

    Variance-preserving initialization (KAT, Sec. "variance-preserving initialization"): ``F``
    is fitted to ``init``; then ``w ~ N(0, σ^2)`` with ``σ^2 = 1 / (in E[F(x)^2])`` for
    ``x ~ N(0, 1)`` (so ``Var[y] = in σ^2 E[F(x)^2] = Var[x] = 1``); bias zero. For the identity
    ``σ^2 = 1 / in`` (LeCun); for GELU ``E[F^2] ≈ 0.425``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        init: str = "identity",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.rational = GroupRational(in_features, groups=groups, m=m, n=n, init=init, **factory)
        self.linear = nn.Linear(in_features, out_features, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rational.reset_parameters()
        a, b = fitted_rational(self.rational.init, self.rational.m, self.rational.n)
        std = 1.0 / math.sqrt(self.linear.in_features * rational_second_moment(a, b))
        nn.init.normal_(self.linear.weight, std=std)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.rational(x))


@register("channel", "grkan", paper=KAT_PAPER)
class GRKAN(TwoLayerChannel):
    r"""Group-rational KAN in place of the MLP: two GR-KAN layers ``d_model -> hidden -> d_model``.

    Paper: Yang & Wang, "Kolmogorov-Arnold Transformer", 2024, arXiv:2409.10594 (KAT).

    Equation (the KAT block's channel mixer)::

        GRKAN(x) = W_2 F_2(W_1 F_1(x) + b_1) + b_2,
        F(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1 x + ... + b_n x^n|)

    with ``m = 5``, ``n = 4`` and each ``F`` shared within ``groups`` contiguous channel groups
    (``F_1`` over the D input channels, ``F_2`` over the hidden ones).

    Shape: ``(..., D) -> (..., D)``; D and hidden must be multiples of ``groups``
    (``width_multiple``).

    Initialization: ``F_1`` = identity and ``F_2`` = ``activation`` (GELU by default, the ViT
    MLP's, so that at init the block is close to an MLP ``W_2 GELU(W_1 x)`` (0.4% apart); KAT also trains a Swish
    variant: ``activation="swish"``), fitted at construction (``fitted_rational``); linear
    weights ``N(0, 1 / (fan_in E[F(x)^2]))`` for ``x ~ N(0, 1)``, biases zero, so a unit-variance
    input keeps unit variance through each layer. (The authors' code documents
    ``act_init=["identity", "gelu"]`` for this block; their ImageNet scripts train the Swish
    variant.)

    Width: ``hidden = expansion * D`` (default 4, as the MLP) rounded up to a multiple of
    ``groups``, unless ``hidden`` is given: the parameter count is the MLP's plus
    ``2 groups (m + n + 1)`` rational coefficients.

    Cost: forward + backward at D = 64, batch 256, one CPU thread: ~3.7-3.9x the MLP's time (no
    CUDA kernel here: Horner's rule in PyTorch ops, differentiated by autograd).

    Options: ``groups`` (g, 8), ``hidden``, ``expansion``, ``m``, ``n``, ``activation``
    (``"gelu"`` or ``"swish"``), ``bias``, ``dropout`` (on the output), ``device``, ``dtype``.

    Differences from the paper and from the authors' code:

    - ``F`` is the paper's equation, with a numerator and a denominator per group, evaluated by
      Horner's rule in PyTorch ops in float32 or wider and differentiated by autograd
      (``group_rational``; ``group_rational_reference`` is the plain sum of powers, tested equal).
      The authors' CUDA/Triton kernel (the ``rational_kat_cu`` package their KAT code uses) is
      not reproduced, and it computes a different function: its denominator is
      ``1 + |b_1||x| + ... + |b_n||x|^n`` (each term made nonnegative), not
      ``1 + |b_1 x + ... + b_n x^n|``, and its ``KAT_Group`` module keeps one numerator
      ``a_0..a_m`` shared by all groups (only the denominators are per group).
    - KAT's identity init is ``a = (0, 1, 0, ..., 0)``, ``b = 0``. Through the paper's ``|Q|``,
      autograd gives ``b = 0`` the gradient ``sign(0) = 0``, so it would never move (the
      authors' kernel differentiates ``|b_i|`` with the sign of 0 taken as +1, and does train
      from ``b = 0``); here the identity is the exact ``x(1 + 0.01 x^4) / (1 + 0.01 x^4)``, so
      the denominator trains.
    - The coefficients are fitted here (least squares + Levenberg–Marquardt on [-6, 6], wider
      than KAT's [-3, 3] so the fitted GELU does not turn over just outside it), not copied.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 4.0,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_rational_options("grkan", groups, m, n)
        if activation not in _TARGETS:
            raise ConfigError(f"grkan: activation must be one of {', '.join(_TARGETS)} "
                              f"(the second rational's init), got {activation!r}")
        if d_model % groups:
            raise ConfigError(f"grkan: d_model ({d_model}) must be a multiple of groups ({groups}); "
                              f"choose groups dividing d_model or d_model = {groups * max(1, round(d_model / groups))}")
        if hidden is not None and (int(hidden) < 1 or hidden % groups):
            raise ConfigError(f"grkan: hidden must be a positive multiple of groups ({groups}), got {hidden}")
        if hidden is None and not expansion > 0:
            raise ConfigError(f"grkan: expansion must be > 0, got {expansion}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"grkan: dropout must be in [0, 1), got {dropout}")
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else groups * math.ceil(max(1, round(expansion * d_model)) / groups)
        opts = {"groups": groups, "m": m, "n": n, "bias": bias, "device": device, "dtype": dtype}
        self.layer1 = GRKANLayer(self.d_model, self.hidden, init="identity", **opts)
        self.layer2 = GRKANLayer(self.hidden, self.d_model, init=activation, **opts)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def width_multiple(cls, *, groups: int = 8, **_: object) -> int:
        return int(groups)
