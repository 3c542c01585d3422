"""Activations: GELU, ReLU, SiLU; PolyReLU and PolyNorm; SELU (with alpha dropout); StableMax.

Each is built as ``cls(d_model, **options)`` like every registered block; ``d_model`` is the width
of the tensor it is applied to (the MLP's hidden width), used by PolyNorm (which normalizes over
it) and accepted for the uniform interface by the elementwise ones. Dtype preserved.

Also here, for the trainer and for SELU networks: ``selu``, ``alpha_dropout``, ``lecun_normal_``,
``stablemax``, ``log_stablemax``, ``stablemax_cross_entropy``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..registry import Paper, register
from ._common import check_last_dim, wide_dtype


class _Activation(nn.Module):
    def __init__(self, d_model: int | None = None) -> None:
        super().__init__()
        self.d_model = d_model


@register("activation", "gelu", paper=Paper("Gaussian Error Linear Units (GELUs)", 2016, "1606.08415"))
class GELU(_Activation):
    r"""Gaussian error linear unit.

    Paper: Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", 2016, arXiv:1606.08415.

    Equation::

        GELU(x) = x Phi(x) = x * 1/2 [1 + erf(x / sqrt(2))]

    ``approximate="tanh"`` gives the paper's approximation
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Shape: ``(*) -> (*)``. No parameters.
    """

    def __init__(self, d_model: int | None = None, *, approximate: str = "none") -> None:
        super().__init__(d_model)
        if approximate not in ("none", "tanh"):
            raise ConfigError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)


@register(
    "activation",
    "relu",
    paper=Paper("Rectified Linear Units Improve Restricted Boltzmann Machines", 2010, None),
)
class ReLU(_Activation):
    r"""Rectified linear unit.

    Paper: Nair & Hinton, "Rectified Linear Units Improve Restricted Boltzmann Machines",
    ICML 2010 (no arXiv id).

    Equation::

        ReLU(x) = max(0, x)

    Shape: ``(*) -> (*)``. No parameters. The derivative at 0 is taken as 0 (PyTorch's choice).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


@register(
    "activation",
    "silu",
    paper=Paper(
        "Sigmoid-Weighted Linear Units for Neural Network Function Approximation in "
        "Reinforcement Learning",
        2017,
        "1702.03118",
    ),
)
class SiLU(_Activation):
    r"""Sigmoid-weighted linear unit (Swish with beta = 1).

    Paper: Elfwing, Uchibe & Doya, "Sigmoid-Weighted Linear Units for Neural Network Function
    Approximation in Reinforcement Learning", 2017, arXiv:1702.03118 (Eq. 1).

    Equation::

        SiLU(z) = z sigma(z),   sigma(z) = 1 / (1 + exp(-z))

    Shape: ``(*) -> (*)``. No parameters.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


# ---------------------------------------------------------------------------------------------
# Shared helpers of the activations below
# ---------------------------------------------------------------------------------------------


def _check_order(name: str, r: int) -> int:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"{name}: r (the polynomial order) must be an integer >= 1, got {r!r}")
    return r


# ---------------------------------------------------------------------------------------------
# PolyCom: polynomial composition activations
# ---------------------------------------------------------------------------------------------

_POLYCOM = Paper(
    "Polynomial Composition Activations: Unleashing the Dynamics of Large Language Models",
    2024,
    "2411.03884",
)


class _PolyCom(nn.Module):
    """The learnable coefficients ``a = (a_0, ..., a_r)`` shared by PolyReLU and PolyNorm."""

    def __init__(
        self,
        d_model: int | None = None,
        *,
        r: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.r = _check_order(self.registry_name, r)
        self.a = nn.Parameter(torch.empty(self.r + 1, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's r = 3 initialization a_0 = 0, a_1 = a_2 = a_3 = 1/3; 1/r in general."""
        with torch.no_grad():
            self.a.fill_(1.0 / self.r)
            self.a[0] = 0.0

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, r={self.r}"


@register("activation", "polyrelu", paper=_POLYCOM)
class PolyReLU(_PolyCom):
    r"""PolyReLU: a learnable polynomial of ReLU.

    Paper: Zhuo, Wang, Zeng, Li, Zhou & Ma, "Polynomial Composition Activations: Unleashing the
    Dynamics of Large Language Models", 2024 (ICLR 2025), arXiv:2411.03884; the
    order, initialization and ``eps`` as in the authors' code (github.com/BryceZhuo/PolyCom).

    Equation::

        PolyReLU(x) = sum_{i=0}^{r} a_i ReLU(x)^i

    with learnable scalars ``a_0 .. a_r`` (the parameter ``a``, shared by all channels, as in
    the paper's code); order ``r = 3`` by default, as in all the paper's experiments.

    Shape: ``(*) -> (*)``, elementwise (``d_model`` is accepted for the uniform interface and
    unused). Computed in float32 or wider, returned in the input dtype.

    Initialization: ``a_0 = 0`` and ``a_i = 1/r`` for ``i >= 1`` (the paper's ``1/3`` at
    ``r = 3``); ``a = (0, 1, 0, ..., 0)`` gives plain ReLU.

    Pitfall: the output grows like ``x^r`` for large inputs; feed it pre-activations of O(1)
    scale (the paper uses it inside the MLP after a fan-in scaled projection).
    """

    def forward(self, x: Tensor) -> Tensor:
        u = F.relu(x.to(wide_dtype(x.dtype)))
        a = self.a.to(u.dtype)
        power = u
        y = a[1] * power + a[0]
        for i in range(2, self.r + 1):
            power = power * u
            y = y + a[i] * power
        return y.to(x.dtype)


@register("activation", "polynorm", paper=_POLYCOM)
class PolyNorm(_PolyCom):
    r"""PolyNorm: a learnable combination of RMS-normalized powers of the input.

    Paper: Zhuo, Wang, Zeng, Li, Zhou & Ma, "Polynomial Composition Activations: Unleashing the
    Dynamics of Large Language Models", 2024 (ICLR 2025), arXiv:2411.03884; the
    RMS normalization, ``eps`` and initialization as in the authors' code.

    Equation, over the ``D = d_model`` channels of one position (powers elementwise)::

        PolyNorm(x) = sum_{i=0}^{r} a_i norm(x^i),
        norm(u) = u / sqrt((1/D) sum_j u_j^2 + eps)        (RMSNorm without gain)

    ``norm(x^0)`` is taken as exactly 1, so ``a_0`` is a plain bias (as in the paper's code,
    which adds ``a_0`` unnormalized; ``norm(1)`` would be ``1/sqrt(1 + eps)``).

    Shape: ``(..., D) -> (..., D)``; each position is normalized over its own ``D`` channels
    (causal for sequences). Statistics in float32 or wider, output in the input dtype.
    ``terms(x)`` returns the normalized powers.

    Initialization: ``a_0 = 0``, ``a_i = 1/r`` for ``i >= 1`` (the paper's ``1/3`` at
    ``r = 3``). Options: ``r`` (default 3), ``eps`` (default 1e-6, the paper's code),
    ``device``, ``dtype``.

    Pitfall: ``x^(2r)`` must be representable in the statistics dtype (float32: ``|x|`` below
    ~1e6 at ``r = 3``).
    """

    def __init__(
        self,
        d_model: int,
        *,
        r: int = 3,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not eps >= 0:
            raise ConfigError(f"polynorm: eps must be >= 0, got {eps}")
        super().__init__(d_model, r=r, device=device, dtype=dtype)
        self.d_model = int(d_model)
        self.eps = float(eps)

    def terms(self, x: Tensor) -> Tensor:
        """The normalized powers ``norm(x^i)``, ``i = 0..r``, stacked first: ``(r+1, ..., D)``,
        in the statistics dtype."""
        check_last_dim(self, x)
        z = x.to(wide_dtype(x.dtype))
        out = [torch.ones_like(z)]
        power = z
        for i in range(1, self.r + 1):
            if i > 1:
                power = power * z
            out.append(power * torch.rsqrt(power.square().mean(dim=-1, keepdim=True) + self.eps))
        return torch.stack(out)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        z = x.to(wide_dtype(x.dtype))
        a = self.a.to(z.dtype)
        y = a[0].expand_as(z)
        power = z
        for i in range(1, self.r + 1):
            if i > 1:
                power = power * z
            y = y + a[i] * power * torch.rsqrt(power.square().mean(dim=-1, keepdim=True) + self.eps)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, r={self.r}, eps={self.eps}"


# ---------------------------------------------------------------------------------------------
# SELU and alpha dropout (self-normalizing networks)
# ---------------------------------------------------------------------------------------------


def _selu_constants() -> tuple[float, float]:
    """The paper's closed form of the fixed-point constants (mean 0, variance 1)::

        alpha_01  = -sqrt(2/pi) / (erfc(1/sqrt 2) e^(1/2) - 1)
        lambda_01 = (1 - erfc(1/sqrt 2) sqrt e) sqrt(2 pi)
                    (2 erfc(sqrt 2) e^2 + pi erfc(1/sqrt 2)^2 e - 2 (2 + pi) erfc(1/sqrt 2) sqrt e
                     + pi + 2)^(-1/2)
    """
    c = math.erfc(1 / math.sqrt(2))
    sqrt_e = math.exp(0.5)
    alpha = -math.sqrt(2 / math.pi) / (c * sqrt_e - 1)
    lam = (1 - c * sqrt_e) * math.sqrt(2 * math.pi) * (
        2 * math.erfc(math.sqrt(2)) * math.e**2
        + math.pi * c**2 * math.e
        - 2 * (2 + math.pi) * c * sqrt_e
        + math.pi
        + 2
    ) ** -0.5
    return alpha, lam


SELU_ALPHA, SELU_LAMBDA = _selu_constants()  # 1.6732632423543778, 1.0507009873554805


def selu(x: Tensor) -> Tensor:
    """``selu(x) = lambda x`` for ``x > 0``, ``lambda alpha (e^x - 1)`` for ``x <= 0``; computed in
    float32 or wider, returned in the input dtype."""
    z = x.to(wide_dtype(x.dtype))
    # clamp: expm1 of a large positive x would overflow, and inf * 0 poisons the gradient
    neg = SELU_ALPHA * torch.expm1(torch.clamp(z, max=0.0))
    return (SELU_LAMBDA * torch.where(z > 0, z, neg)).to(x.dtype)


def alpha_dropout_affine(p: float) -> tuple[float, float, float]:
    """``(alpha', a, b)`` of alpha dropout at drop rate ``p = 1 - q``: dropped units are set to
    ``alpha' = -lambda alpha``, then ``y -> a y + b`` with ``a = (q + alpha'^2 q (1-q))^(-1/2)``,
    ``b = -a (1-q) alpha'``, which keeps mean 0 and variance 1 of a mean-0, variance-1 input."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"alpha dropout: the drop rate must be in [0, 1), got {p}")
    q = 1.0 - p
    alpha_p = -SELU_LAMBDA * SELU_ALPHA
    a = (q + alpha_p**2 * q * (1 - q)) ** -0.5
    return alpha_p, a, -a * (1 - q) * alpha_p


def alpha_dropout(
    x: Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Alpha dropout (Klambauer et al. 2017, Sec. "New Dropout Technique"): each unit is kept with
    probability ``q = 1 - p`` (mask ``d``) and ``y = a (x d + alpha' (1 - d)) + b``. The identity
    when not training or ``p = 0``."""
    alpha_p, a, b = alpha_dropout_affine(p)
    if not training or p == 0.0:
        return x
    z = x.to(wide_dtype(x.dtype))
    keep = torch.rand(x.shape, generator=generator, device=x.device) < 1.0 - p
    return torch.where(keep, a * z + b, a * alpha_p + b).to(x.dtype)


def lecun_normal_(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """LeCun normal initialization in place: ``w ~ N(0, 1/fan_in)``, the weights SELU networks
    assume (``fan_in`` = the product of all dims but the first, as in ``nn.Linear``/``nn.Conv``)."""
    if weight.dim() < 2:
        raise ShapeError(f"lecun_normal_ needs a weight with >= 2 dims (out, in, ...); got {tuple(weight.shape)}")
    fan_in = weight[0].numel()
    with torch.no_grad():
        return weight.normal_(0.0, fan_in**-0.5, generator=generator)


@register("activation", "selu", paper=Paper("Self-Normalizing Neural Networks", 2017, "1706.02515"))
class SELU(_Activation):
    r"""Scaled exponential linear unit, with optional alpha dropout.

    Paper: Klambauer, Unterthiner, Mayr & Hochreiter, "Self-Normalizing Neural Networks", 2017,
    arXiv:1706.02515 (SELU, the closed form of alpha_01 and lambda_01, and
    alpha dropout from its section "New Dropout Technique").

    Equation::

        selu(x) = lambda x                  if x > 0
                  lambda alpha (e^x - 1)    if x <= 0

    with ``alpha = alpha_01 ~ 1.6732632423543772`` and ``lambda = lambda_01 ~ 1.0507009873554805``
    computed in the module from the paper's closed form (``SELU_ALPHA``, ``SELU_LAMBDA``): the
    values that make mean 0 / variance 1 a fixed point of a layer with weights of mean 0 and
    variance ``1/n`` (``lecun_normal_``).

    ``dropout = p > 0`` adds alpha dropout after the activation in training mode only: a unit is
    dropped with probability ``p`` (the paper's ``1 - q``) and set to ``alpha' = -lambda alpha``,
    then ``y = a y + b`` with ``a = (q + alpha'^2 q (1 - q))^(-1/2)``, ``b = -a (1 - q) alpha'``
    (``alpha_dropout``). The identity in eval mode.

    Shape: ``(*) -> (*)``, elementwise (``d_model`` unused). No parameters. Computed in float32
    or wider, returned in the input dtype.

    Pitfall: the self-normalizing property needs LeCun-normal weights and no other normalization;
    with the MLP's default uniform init (variance ``1/(3 fan_in)``) activations shrink with depth.
    """

    def __init__(self, d_model: int | None = None, *, dropout: float = 0.0) -> None:
        super().__init__(d_model)
        alpha_dropout_affine(dropout)  # validates the rate
        self.dropout = float(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return alpha_dropout(selu(x), self.dropout, self.training)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"


# ---------------------------------------------------------------------------------------------
# StableMax (softmax replacement) and its cross-entropy
# ---------------------------------------------------------------------------------------------


def stablemax_s(x: Tensor) -> Tensor:
    """The paper's ``s(x) = x + 1`` for ``x >= 0``, ``1 / (1 - x)`` for ``x < 0``; positive,
    continuous with a continuous first derivative (``s(0) = s'(0) = 1``), ``s''`` jumps 0 -> 2."""
    # the clamps keep the branch not taken finite, so its gradient is 0 rather than NaN
    return torch.where(x >= 0, torch.clamp(x, min=0.0) + 1, 1 / (1 - torch.clamp(x, max=0.0)))


def _log_s(x: Tensor) -> Tensor:
    """``log s(x)``: ``log1p(x)`` for ``x >= 0``, ``-log1p(-x)`` for ``x < 0``."""
    return torch.where(x >= 0, torch.log1p(torch.clamp(x, min=0.0)), -torch.log1p(-torch.clamp(x, max=0.0)))


def stablemax(x: Tensor, dim: int = -1) -> Tensor:
    """``StableMax(x)_i = s(x_i) / sum_j s(x_j)`` over ``dim``; in float32 or wider, returned in
    the input dtype."""
    s = stablemax_s(x.to(wide_dtype(x.dtype)))
    return (s / s.sum(dim=dim, keepdim=True)).to(x.dtype)


def log_stablemax(x: Tensor, dim: int = -1) -> Tensor:
    """``log StableMax(x) = log s(x_i) - log sum_j s(x_j)`` over ``dim``, with ``log s`` from
    ``log1p``; in float32 or wider, returned in the input dtype."""
    z = x.to(wide_dtype(x.dtype))
    return (_log_s(z) - torch.log(stablemax_s(z).sum(dim=dim, keepdim=True))).to(x.dtype)


def stablemax_cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """The paper's StableMax cross-entropy (StCE): ``-log StableMax(logits)[target]``.

    ``logits`` ``(..., C)``, integer ``targets`` ``(...)``. As in the paper's code, computed in
    float64 whatever the logits' dtype; returned in float32 or wider. ``reduction``: "mean",
    "sum" or "none" (the per-example losses, shape ``(...)``).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError(f"stablemax_cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.dim() < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ShapeError(
            f"stablemax_cross_entropy expects logits (..., C) and targets (...) with the same leading "
            f"shape; got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    logp = log_stablemax(logits.to(torch.float64), dim=-1)
    loss = -logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss.to(wide_dtype(logits.dtype))


@register(
    "activation",
    "stablemax",
    paper=Paper("Grokking at the Edge of Numerical Stability", 2025, "2501.04697"),
)
class StableMax(_Activation):
    r"""StableMax: a softmax replacement whose probabilities neither underflow nor saturate.

    Paper: Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability",
    2025 (ICLR 2025), arXiv:2501.04697; StCE computed in float64 as in the authors' code.

    Equation, over ``dim`` (default the last)::

        s(x) = x + 1          if x >= 0
               1 / (1 - x)    if x < 0
        StableMax(x)_i = s(x_i) / sum_j s(x_j)

    ``s`` grows linearly instead of exponentially, so logits of magnitude 1e4 give probabilities
    ~1e-8 rather than softmax's exact zeros ("Softmax Collapse"). ``s`` is C^1 at 0
    (``s(0) = s'(0) = 1``) but not C^2.

    Shape: ``(*) -> (*)``, normalized over ``dim`` (``d_model`` unused). No parameters. Computed
    in float32 or wider, returned in the input dtype. The functions ``stablemax``,
    ``log_stablemax`` and ``stablemax_cross_entropy`` (the paper's StCE loss, in float64 as in
    the paper's code) are in this module.

    Differences: StableMax is not shift-invariant (``StableMax(x + c) != StableMax(x)``), so,
    unlike softmax, no max is subtracted.
    """

    def __init__(self, d_model: int | None = None, *, dim: int = -1) -> None:
        super().__init__(d_model)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ConfigError(f"stablemax: dim must be an integer, got {dim!r}")
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return stablemax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
