"""B-cos layers: linear maps whose output is scaled by the input-weight alignment |cos|^(B-1)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_hidden_options, check_last_dim, wide_dtype


def _check_bcos(B: Any, max_out: Any, eps: Any) -> None:
    if isinstance(B, bool) or not isinstance(B, (int, float)) or not B >= 1:
        raise ConfigError(f"bcos: B must be a number >= 1 (B = 1 is a linear layer with unit-norm rows), got {B!r}")
    if isinstance(max_out, bool) or not isinstance(max_out, int) or max_out < 1:
        raise ConfigError(f"bcos: max_out must be an integer >= 1 (1 = no MaxOut), got {max_out!r}")
    if not eps > 0:
        raise ConfigError(f"bcos: eps must be > 0, got {eps!r}")


class BcosLinear(nn.Module):
    r"""The B-cos transform: a bias-free linear map scaled by |cos(x, w)|^(B-1).

    Paper: Böhle, Fritz & Schiele, "B-cos Networks: Alignment is All We Need for
    Interpretability", 2022, arXiv:2205.10268; MaxOut as in that paper's models.

    Equation, per output unit ``j`` with weight row ``w_j``::

        f_j(x) = |cos(x, ŵ_j)|^(B-1) × ŵ_jᵀ x,    ŵ_j = w_j / ||w_j||,   cos(x, ŵ) = ŵᵀx / ||x||

    so ``|f_j(x)| = |cos|^B ||x|| <= ||x||``. It is a dynamic linear map
    ``f(x) = W(x) x`` with ``W(x) = diag(|cos(x, ŵ_j)|^(B-1)) Ŵ`` (``dynamic_weight``): the
    paper's explanation. B = 1 is a linear layer with unit-norm rows; larger B suppresses units
    that are not aligned with the input. With ``max_out = M > 1`` each unit has M weight rows and
    outputs the B-cos response of the row with the largest ``ŵᵀx`` (the 2022 models' MaxOut; the
    bound ``|f_j| <= ||x||`` still holds).

    Shape: ``(..., in_features) -> (..., out_features)``.

    Numerics: ``||x||`` is computed as ``sqrt(||x||^2 + eps^2)`` (eps = 1e-6 by default), so at
    ``x = 0`` the output is 0 and its gradient finite (0). For B > 1 the output is computed as
    ``sign(u) |u|^B / ||x||^(B-1)`` with ``u = ŵᵀx``, which equals ``|u/||x|| |^(B-1) u`` but has
    a finite derivative at ``u = 0`` also for 1 < B < 2. Norms, the cosine and the power are
    computed in float32 or wider; the output is in the input dtype.

    Initialization: ``w`` i.i.d. U(-1/sqrt(in), 1/sqrt(in)) (``nn.Linear``'s default); only its
    direction matters.

    Deviations: no bias (the paper removes biases: they break the dynamic-linear form). The
    official code divides every layer's output by a fixed scale (v1) or relies on normalization
    layers and a logit temperature (v2); this layer is the plain transform, and ``BcosMLP`` adds
    a fixed gain.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        B: float = 2.0,
        max_out: int = 1,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_bcos(B, max_out, eps)
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"BcosLinear: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.B, self.max_out, self.eps = float(B), int(max_out), float(eps)
        self.weight = nn.Parameter(torch.empty(out_features * max_out, in_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.in_features ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def unit_weight(self) -> Tensor:
        """Ŵ: the weight rows scaled to unit norm (float32 or wider), shape (out * max_out, in)."""
        w = self.weight.to(wide_dtype(self.weight.dtype))
        return w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """u = ŵᵀx of the selected (MaxOut) rows, ||x|| (eps-safe), and the selected row index."""
        xc = x.to(wide_dtype(x.dtype))
        u = xc @ self.unit_weight().T
        if self.max_out > 1:
            u, pick = u.unflatten(-1, (self.out_features, self.max_out)).max(dim=-1)
        else:
            pick = torch.zeros(u.shape, dtype=torch.long, device=u.device)
        norm = torch.sqrt((xc * xc).sum(-1, keepdim=True) + self.eps**2)
        return u, norm, pick

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        u, norm, _ = self._parts(x)
        if self.B == 1.0:
            out = u
        elif self.B == 2.0:
            out = u * u.abs() / norm
        else:
            out = torch.sign(u) * u.abs().pow(self.B) / norm.pow(self.B - 1)
        return out.to(x.dtype)

    def dynamic_weight(self, x: Tensor) -> Tensor:
        """W(x) = diag(|cos(x, ŵ_j)|^(B-1)) Ŵ, shape (..., out_features, in_features), with
        ``forward(x) = W(x) x`` (for MaxOut, Ŵ holds each unit's winning row)."""
        check_last_dim(self, x, self.in_features, "in_features")
        u, norm, pick = self._parts(x)
        rows = self.unit_weight().unflatten(0, (self.out_features, self.max_out))  # (out, M, in)
        w_hat = rows[torch.arange(self.out_features, device=x.device), pick]  # (..., out, in)
        return (u / norm).abs().pow(self.B - 1).unsqueeze(-1) * w_hat

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, B={self.B:g}, max_out={self.max_out}"


def bcos_gain(in_features: int, B: float) -> float:
    r"""The factor that gives a B-cos unit the input's RMS at random alignment.

    With ŵ a random direction in R^d, cos(x, ŵ) ≈ N(0, 1/d), so the unit's output
    ``sign(cos)|cos|^B ||x||`` has RMS ``d^((1-B)/2) sqrt(m_2B) rms(x)`` with the Gaussian moment
    ``m_2B = E|g|^(2B) = 2^B Γ(B + 1/2) / sqrt(pi)``. The gain is the inverse:
    ``d^((B-1)/2) / sqrt(m_2B)`` (B = 1: 1; B = 2: sqrt(d/3)).
    """
    m = 2.0**B * math.gamma(B + 0.5) / math.sqrt(math.pi)
    return in_features ** ((B - 1) / 2) / math.sqrt(m)


@register(
    "channel",
    "bcos",
    paper=Paper("B-cos Networks: Alignment is All We Need for Interpretability", 2022, "2205.10268"),
)
class BcosMLP(nn.Module):
    r"""Two B-cos layers, ``d_model -> hidden -> d_model``, with no other nonlinearity.

    Papers: Böhle, Fritz & Schiele, "B-cos Networks: Alignment is All We Need for
    Interpretability", 2022, arXiv:2205.10268; Böhle et al., "B-cos Alignment for Inherently
    Interpretable CNNs and Vision Transformers", 2023, arXiv:2306.10898; Arya et
    al., "B-cosification: Transforming Deep Neural Networks to be Inherently Interpretable", 2024,
    arXiv:2411.00715.

    Equation::

        BcosMLP(x) = g_2 f_2(g_1 f_1(x)),   f_l = B-cos transform (``BcosLinear``)

    with fixed gains ``g_1 = bcos_gain(d_model, B)``, ``g_2 = bcos_gain(hidden, B)``. The block is
    dynamic linear: ``BcosMLP(x) = W_{1->2}(x) x`` with ``W_{1->2}(x) = g_2 W_2(h) g_1 W_1(x)``
    (``dynamic_weight``), the paper's model-faithful summary (Eq. 13).

    Between the layers: no ReLU/GELU. The B-cos transform is itself nonlinear for B > 1 (its
    dynamic scale depends on x), and B-cos networks use no other activation; the 2022 models add
    MaxOut (2 rows per unit), the 2023 models drop it (the official v2 ``BcosLinear`` defaults to
    ``max_out=1``); MaxOut doubles the layer's parameters and compute. Default ``max_out = 1``;
    ``max_out = 2`` gives the 2022 variant.

    Shape: ``(..., D) -> (..., D)``; ``hidden = round(expansion * d_model)`` unless ``hidden``.

    Initialization: weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (direction uniform on the sphere
    is what matters). The gains make each layer RMS-preserving at init (see ``bcos_gain``):
    without them the block's output at init would be ~``3 / (hidden sqrt(d))`` of its input's
    RMS (|cos| ~ 1/sqrt(fan_in) per layer) and training from the block's own init would stall.

    Deviations: the fixed gains (v1 uses a fixed per-layer divisor as well, ``sqrt(fan_in)/100``;
    v2 uses normalization layers); no biases (the paper has none); ``dropout`` on the output.
    Options: ``B`` (default 2), ``max_out``, ``hidden``, ``expansion`` (default 4), ``eps``,
    ``dropout``, ``device``, ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        B: float = 2.0,
        max_out: int = 1,
        hidden: int | None = None,
        expansion: float = 4.0,
        eps: float = 1e-6,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_hidden_options("bcos", hidden, expansion, dropout)
        _check_bcos(B, max_out, eps)
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else max(1, round(expansion * d_model))
        factory = {"device": device, "dtype": dtype}
        self.fc1 = BcosLinear(d_model, self.hidden, B=B, max_out=max_out, eps=eps, **factory)
        self.fc2 = BcosLinear(self.hidden, d_model, B=B, max_out=max_out, eps=eps, **factory)
        self.gain1, self.gain2 = bcos_gain(self.d_model, B), bcos_gain(self.hidden, B)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.gain2 * self.fc2(self.gain1 * self.fc1(x)))

    def dynamic_weight(self, x: Tensor) -> Tensor:
        """W_{1->2}(x), shape (..., D, D), with ``forward(x) = W_{1->2}(x) x`` (no dropout)."""
        check_last_dim(self, x)
        h = self.gain1 * self.fc1(x)
        return (self.gain2 * self.fc2.dynamic_weight(h)) @ (self.gain1 * self.fc1.dynamic_weight(x))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"
