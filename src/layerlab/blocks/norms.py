"""Normalization layers over the last dimension: LayerNorm, RMSNorm, EvoNorm-B0 and EvoNorm-S0.

All compute their statistics in float32 or wider (float64 input stays float64) and return the
input's dtype, so a bfloat16 activation is normalized with float32 statistics.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._common import WideBuffers, check_last_dim, wide_dtype


@register("norm", "layernorm", paper=Paper("Layer Normalization", 2016, "1607.06450"))
class LayerNorm(nn.Module):
    r"""Layer normalization over the last dimension.

    Paper: Ba, Kiros & Hinton, "Layer Normalization", 2016, arXiv:1607.06450 (Eq. 4).

    Equation, over the ``H = d_model`` features ``a_i`` of one position::

        mu = (1/H) sum_i a_i,   sigma = sqrt((1/H) sum_i (a_i - mu)^2 + eps)
        h_i = g_i (a_i - mu) / sigma + b_i

    (the paper writes ``sigma`` without ``eps``; ``eps`` guards constant inputs, as in PyTorch).

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider, output in the input dtype.

    Initialization: gain ``g = 1``, bias ``b = 0``.

    Options (PyTorch's names): ``eps``, ``bias`` (learn ``b``), ``elementwise_affine``
    (learn ``g`` and, if ``bias``, ``b``; False gives the plain standardization), ``device``,
    ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        eps: float = 1e-5,
        bias: bool = True,
        elementwise_affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not eps >= 0:
            raise ConfigError(f"layernorm: eps must be >= 0, got {eps}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(d_model, **factory)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.empty(d_model, **factory)) if elementwise_affine and bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        a = x.to(wide_dtype(x.dtype))
        mu = a.mean(dim=-1, keepdim=True)
        var = (a - mu).square().mean(dim=-1, keepdim=True)
        h = (a - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            h = h * self.weight.to(h.dtype)
        if self.bias is not None:
            h = h + self.bias.to(h.dtype)
        return h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}, affine={self.weight is not None}, bias={self.bias is not None}"


@register(
    "norm", "rmsnorm", paper=Paper("Root Mean Square Layer Normalization", 2019, "1910.07467")
)
class RMSNorm(nn.Module):
    r"""Root-mean-square normalization over the last dimension (no centering, no bias).

    Paper: Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019, arXiv:1910.07467
    (Eq. 4).

    Equation, over the ``n = d_model`` features ``a_i`` of one position::

        RMS(a) = sqrt((1/n) sum_i a_i^2 + eps),   y_i = a_i / RMS(a) * g_i

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider, output in the input dtype.
    With ``g = 1`` every output position has root mean square ``sqrt(ms / (ms + eps))``, i.e. 1
    up to ``eps / (2 ms)``.

    Initialization: gain ``g = 1``.

    Options: ``eps`` (inside the square root, as in PyTorch's ``nn.RMSNorm``; the paper's Eq. 4
    has none), ``device``, ``dtype``. The paper's optional bias and partial RMSNorm (pRMSNorm)
    are not implemented.
    """

    def __init__(
        self,
        d_model: int,
        *,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not eps >= 0:
            raise ConfigError(f"rmsnorm: eps must be >= 0, got {eps}")
        self.d_model = int(d_model)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(d_model, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        a = x.to(wide_dtype(x.dtype))
        rms = torch.sqrt(a.square().mean(dim=-1, keepdim=True) + self.eps)
        return (a / rms * self.weight.to(a.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


# ---------------------------------------------------------------------------------------------
# EvoNorms: evolved normalization-activation layers
# ---------------------------------------------------------------------------------------------

_EVONORM = Paper("Evolving Normalization-Activation Layers", 2020, "2004.02967")


def _check_groups(name: str, d_model: int, groups: int) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"{name}: groups must be an integer >= 1, got {groups!r}")
    if d_model % groups:
        raise ConfigError(
            f"{name}: d_model = {d_model} is not a multiple of groups = {groups}; choose groups "
            f"dividing d_model (the block's width_multiple is groups)"
        )
    if d_model // groups < 2:
        raise ConfigError(
            f"{name}: d_model = {d_model} split into groups = {groups} leaves "
            f"{d_model // groups} channel per group; a group variance needs >= 2 channels: use "
            f"groups <= {d_model // 2}"
        )
    return groups


def group_std(a: Tensor, groups: int, eps: float) -> Tensor:
    """``sqrt(s^2_group + eps)`` broadcast back to ``a``'s shape ``(..., D)``: the (biased)
    variance over the ``D / groups`` consecutive channels of each group, at each position."""
    g = a.unflatten(-1, (groups, a.shape[-1] // groups))
    var = g.var(dim=-1, unbiased=False, keepdim=True)
    return torch.sqrt(var + eps).expand_as(g).flatten(-2)


class _EvoNorm(nn.Module):
    """Parameters shared by EvoNorm-B0 and -S0: per-channel ``gamma`` (``weight``), ``beta``
    (``bias``) and ``v_1`` (``v``)."""

    @classmethod
    def width_multiple(cls, *, groups: int = 4, **_: Any) -> int:
        """d_model must split evenly into groups."""
        return int(groups)

    def __init__(
        self,
        d_model: int,
        *,
        groups: int = 4,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        name = self.registry_name
        if not eps >= 0:
            raise ConfigError(f"{name}: eps must be >= 0, got {eps}")
        self.d_model = int(d_model)
        self.groups = _check_groups(name, self.d_model, groups)
        self.eps = float(eps)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(d_model, **factory))
        self.bias = nn.Parameter(torch.empty(d_model, **factory))
        self.v = nn.Parameter(torch.empty(d_model, **factory))
        self._reset_affine()

    def _reset_affine(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.v)

    def reset_parameters(self) -> None:
        self._reset_affine()

    def extra_repr(self) -> str:
        return f"{self.d_model}, groups={self.groups}, eps={self.eps}"


@register("norm", "evonorm_b0", paper=_EVONORM)
class EvoNormB0(WideBuffers, _EvoNorm):
    r"""EvoNorm-B0: a batch-dependent normalization-activation layer.

    Paper: Liu, Brock, Simonyan & Le, "Evolving Normalization-Activation Layers", 2020
    (NeurIPS 2020), arXiv:2004.02967; constants (eps, momentum, init) from the authors' code
    (tensorflow/tpu, models/official/resnet).

    Equation (per channel)::

        y = x / max( sqrt(s^2_b(x) + eps), v_1 x + sqrt(s^2_i(x) + eps) ) * gamma + beta

    Adaptation to feature vectors / tokens ``(..., D)`` (the paper's inputs are images
    ``(N, H, W, C)``):

    - ``s^2_b``, the batch variance, is the per-channel (biased) variance over *all* leading
      positions (batch and sequence), as the paper's is over ``(N, H, W)``. In training it mixes
      positions and examples, exactly as BatchNorm does, so a sequence model using it is not
      causal in training mode (eval mode is). In training the running variance is updated as in
      the paper's code, ``running_var <- (1 - momentum) running_var + momentum s^2_b``
      (biased ``s^2_b``, ``momentum = 0.1`` = the code's decay 0.9, initial value 1), and eval
      mode uses ``running_var`` in place of ``s^2_b``.
    - ``s^2_i``, the paper's instance variance over ``(H, W)`` per channel, has no spatial extent
      here (a single position gives variance 0); it is taken instead over the ``D / groups``
      channels of the channel's group at the same position (as S0's group variance), so it
      stays per position.

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider (``running_var`` is float32
    or wider, also after ``module.to(torch.bfloat16)``), output in the input dtype.

    Initialization (paper's code): ``gamma = 1``, ``beta = 0``, ``v_1 = 1``, ``running_var = 1``.
    Options: ``groups`` (default 4; ``d_model`` must be a multiple with >= 2 channels a group),
    ``eps`` (1e-5, the paper's code), ``momentum`` (0.1), ``device``, ``dtype``.
    """

    wide_buffers = ("running_var",)

    def __init__(
        self,
        d_model: int,
        *,
        groups: int = 4,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, groups=groups, eps=eps, device=device, dtype=dtype)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"evonorm_b0: momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        stat_dtype = wide_dtype(dtype if dtype is not None else torch.get_default_dtype())
        self.register_buffer("running_var", torch.ones(d_model, device=device, dtype=stat_dtype))

    def reset_running_stats(self) -> None:
        self.running_var.fill_(1.0)

    def reset_parameters(self) -> None:
        self._reset_affine()
        self.reset_running_stats()

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        a = x.to(wide_dtype(x.dtype))
        if self.training:
            var_b = a.reshape(-1, self.d_model).var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_var.lerp_(var_b.detach().to(self.running_var.dtype), self.momentum)
        else:
            var_b = self.running_var.to(a.dtype)
        left = torch.sqrt(var_b + self.eps)
        right = self.v.to(a.dtype) * a + group_std(a, self.groups, self.eps)
        y = a / torch.maximum(left, right) * self.weight.to(a.dtype) + self.bias.to(a.dtype)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", momentum={self.momentum}"


@register("norm", "evonorm_s0", paper=_EVONORM)
class EvoNormS0(_EvoNorm):
    r"""EvoNorm-S0: a batch-independent normalization-activation layer.

    Paper: Liu, Brock, Simonyan & Le, "Evolving Normalization-Activation Layers", 2020
    (NeurIPS 2020), arXiv:2004.02967; constants (eps, momentum, init) from the authors' code
    (tensorflow/tpu, models/official/resnet).

    Equation (per channel)::

        y = x sigma(v_1 x) / sqrt(s^2_{w,h,c/g}(x) + eps) * gamma + beta

    with ``sigma`` the logistic sigmoid and ``s^2`` the (biased) group variance. Adaptation to
    ``(..., D)`` inputs: the paper's group variance runs over ``(H, W)`` and the ``C / g``
    channels of a group; here it runs over the ``D / groups`` channels of the group at each
    position, so every position is normalized on its own (causal, batch independent, the same in
    train and eval mode).

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider, output in the input dtype.

    Initialization (paper's code): ``gamma = 1``, ``beta = 0``, ``v_1 = 1``. Options: ``groups``
    (default 4, not the paper's 32: with no spatial extent a group has only ``D / groups``
    values; ``d_model`` must be a multiple with >= 2 channels a group), ``eps`` (1e-5, the
    paper's code), ``device``, ``dtype``.

    Pitfall: the numerator ``x`` is not centered, so a group whose channels are nearly equal
    (tiny variance, nonzero mean) is amplified up to ``1/sqrt(eps)``; more channels per group make
    this rarer.
    """

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        a = x.to(wide_dtype(x.dtype))
        num = a * torch.sigmoid(self.v.to(a.dtype) * a)
        y = num / group_std(a, self.groups, self.eps) * self.weight.to(a.dtype) + self.bias.to(a.dtype)
        return y.to(x.dtype)
