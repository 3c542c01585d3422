"""CRReLU: the Correction Regularized ReLU derived by entropy-based activation function optimization."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._common import wide_dtype

CRRELU_PAPER = Paper("A Method on Searching Better Activation Functions", 2024, "2405.12954")


def crrelu(x: Tensor, eps: Tensor | float) -> Tensor:
    """``ReLU(x) + eps * x * exp(-x^2 / 2)`` in float32 or wider, returned in the input dtype."""
    z = x.to(wide_dtype(x.dtype))
    eps = torch.as_tensor(eps, dtype=z.dtype, device=z.device)
    return (F.relu(z) + eps * z * torch.exp(-0.5 * z * z)).to(x.dtype)


@register("activation", "crrelu", paper=CRRELU_PAPER)
class CRReLU(nn.Module):
    r"""Correction Regularized ReLU.

    Paper: Sun, Wu, Xia, Chang, Dong, Yuan, Chang & Wang, "A Method on Searching Better Activation
    Functions", 2024, arXiv:2405.12954 (the EAFO methodology applied to ReLU, Sec. 4).

    Equation::

        CRReLU(x) = ReLU(x) + eps * x * exp(-x^2 / 2)

    with one learnable scalar ``eps`` per activation module. The correction ``x exp(-x^2/2)`` is
    the (unnormalized) derivative of a Gaussian: odd, extreme at ``x = ±1`` with value
    ``±exp(-1/2)``, and vanishing for ``|x| -> inf``, so CRReLU equals ReLU far from 0 and only
    reshapes it near the kink (``eps > 0`` lets small negative inputs through with a negative
    output, like the dip of GELU). ``eps = 0`` is ReLU exactly.

    Shape: ``(*) -> (*)``, elementwise (``d_model`` is accepted for the uniform interface and
    unused). Computed in float32 or wider, returned in the input dtype.

    Initialization: ``eps = 0.01`` (option ``eps``), the value the authors' code starts from.

    Pitfall: ``eps`` is trained with the weights; with weight decay applied to every parameter
    (AdamW default in the arena) it is pulled towards 0, i.e. towards ReLU.
    """

    def __init__(
        self,
        d_model: int | None = None,
        *,
        eps: float = 0.01,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
            raise ConfigError(f"crrelu: eps (the initial correction weight) must be a finite number, got {eps!r}")
        self.d_model = d_model
        self.eps_init = float(eps)
        self.eps = nn.Parameter(torch.empty((), device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.eps.fill_(self.eps_init)

    def forward(self, x: Tensor) -> Tensor:
        return crrelu(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps_init={self.eps_init}"
