"""Elementwise activations: GELU, ReLU, SiLU.

Each is built as ``cls(d_model)`` like every registered block; ``d_model`` is accepted for the
uniform interface and unused. Shape ``(*) -> (*)``, dtype preserved, no parameters.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register


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
