"""Position-wise feed-forward blocks: the GELU MLP and the SwiGLU gated MLP."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import Paper, build, register
from .._common import check_hidden_options, check_last_dim, init_linear
from ..activations import lecun_normal_


def _build_activation(name: str, width: int, options: dict[str, Any], factory: dict[str, Any]) -> nn.Module:
    """A registered activation of width `width`; device/dtype passed where it takes them."""
    from ...registry import get

    accepted = get("activation", name).options
    extra = {k: v for k, v in factory.items() if k in accepted and k not in options}
    return build("activation", name, width, **options, **extra)


@register("channel", "mlp", paper=Paper("Gaussian Error Linear Units (GELUs)", 2016, "1606.08415"))
class MLP(nn.Module):
    r"""Two-layer perceptron with a GELU nonlinearity: the Transformer's feed-forward sub-layer.

    Paper: Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", 2016, arXiv:1606.08415
    (the nonlinearity); the position-wise FFN is Vaswani et al. 2017, arXiv:1706.03762, Eq. 2.

    Equation::

        MLP(x) = W_2 act(W_1 x + b_1) + b_2,   act = GELU(z) = z Phi(z)  (exact, erf form) by default

    with ``W_1: d_model -> hidden`` (``fc1``) and ``W_2: hidden -> d_model`` (``fc2``);
    ``hidden = round(expansion * d_model)`` unless ``hidden`` is given (then ``expansion`` is
    ignored).

    Shape: ``(..., D) -> (..., D)``, applied to each position independently.

    Initialization: weights and biases i.i.d. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's
    ``nn.Linear`` default); with ``activation="selu"`` LeCun normal weights N(0, 1/fan_in) and
    zero biases, the initialization self-normalizing networks assume (Klambauer et al. 2017). A width-independent std such as GPT-2's 0.02 is too small at the
    widths of the arena (d = 32..128) and slows learning measurably (e.g. MQAR's recall
    transition).

    Options: ``hidden``, ``expansion`` (default 4), ``bias``, ``dropout`` (on the block's output,
    the Transformer's residual dropout), ``activation`` (any registered activation, built at
    width ``hidden`` with ``activation_options``; e.g. "polyrelu", "selu"), ``device``, ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 4.0,
        bias: bool = True,
        dropout: float = 0.0,
        activation: str = "gelu",
        activation_options: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_hidden_options("mlp", hidden, expansion, dropout)
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else max(1, round(expansion * d_model))
        self.activation = activation
        self.act = _build_activation(activation, self.hidden, activation_options or {}, factory)
        self.fc1 = nn.Linear(d_model, self.hidden, bias=bias, **factory)
        self.fc2 = nn.Linear(self.hidden, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.activation == "selu":  # self-normalizing nets assume Var w = 1/fan_in, zero bias
            for linear in (self.fc1, self.fc2):
                lecun_normal_(linear.weight)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            return
        init_linear(self.fc1)
        init_linear(self.fc2)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.fc2(self.act(self.fc1(x))))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, activation={self.activation!r}"


def swiglu_hidden(d_model: int, expansion: float = 8 / 3, multiple_of: int = 8) -> int:
    """round(expansion * d_model), rounded up to a multiple of `multiple_of`."""
    return multiple_of * math.ceil(max(1, round(expansion * d_model)) / multiple_of)


@register("channel", "swiglu", paper=Paper("GLU Variants Improve Transformer", 2020, "2002.05202"))
class SwiGLU(nn.Module):
    r"""Gated feed-forward block with a Swish (SiLU) gate.

    Paper: Shazeer, "GLU Variants Improve Transformer", 2020, arXiv:2002.05202 (Eq. 6).

    Equation, in the paper's notation (row vectors, no biases)::

        FFN_SwiGLU(x, W, V, W_2) = (Swish_1(x W) ⊗ x V) W_2,   Swish_1(z) = z sigmoid(z) = SiLU(z)

    ``W`` is ``w`` (d_model -> hidden, the gate), ``V`` is ``v`` (d_model -> hidden, the value),
    ``W_2`` is ``w2`` (hidden -> d_model). In the LLaMA naming ``W_2(SiLU(W_1 x) ⊙ W_3 x)``,
    ``W_1 = W`` and ``W_3 = V``.

    Shape: ``(..., D) -> (..., D)``, applied to each position independently.

    Width: with three matrices instead of two, the paper shrinks the hidden width by 2/3 to keep
    the parameter count of the expansion-4 MLP. Here ``hidden = round(expansion * d_model)``
    rounded up to a multiple of 8 (default ``expansion = 8/3``), unless ``hidden`` is given.
    The count ``3 d h`` is within 5% of the MLP's ``8 d^2`` for ``d_model >= 32``; the rounding
    to 8 costs more at tiny widths (``d_model = 16``: +12.5%).

    Initialization: as ``MLP``: weights (and biases) i.i.d. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Options: ``hidden``, ``expansion``, ``bias`` (default False, as in the paper),
    ``dropout`` (on the block's output), ``device``, ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 8 / 3,
        bias: bool = False,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_hidden_options("swiglu", hidden, expansion, dropout)
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else swiglu_hidden(d_model, expansion)
        self.w = nn.Linear(d_model, self.hidden, bias=bias, **factory)
        self.v = nn.Linear(d_model, self.hidden, bias=bias, **factory)
        self.w2 = nn.Linear(self.hidden, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w, self.v, self.w2):
            init_linear(linear)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.w2(F.silu(self.w(x)) * self.v(x)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"
