r"""Quantization-aware training with the straight-through estimator (STE): the forward pass uses the
round-to-nearest quantized weights, the backward pass treats rounding as the identity.

The estimator: Bengio, Léonard & Courville, "Estimating or Propagating Gradients Through Stochastic
Neurons for Conditional Computation" (2013, arXiv:1308.3432; abstract verified: the straight-through
estimator "heuristically copies the gradient with respect to the stochastic output directly as an
estimator of the gradient with respect to" its input), the paper the method is registered under;
used for quantized weights as in Courbariaux et al.'s BinaryConnect (2015, arXiv:1511.00363).
Setting it serves here: Vlassis, Ashkboos, Volkova, Hoefler & Alistarh, "Beyond Outliers: A Study
of Optimizers Under Quantization" (2025, arXiv:2509.23500; abstract verified), who besides
post-training quantization "train quantized models from scratch" (QAT) with six optimizers; their
exact QAT recipe could not be read beyond the abstract.

For each quantized Linear with latent weight ``W`` the forward pass computes ``y = x Q_b(W)ᵀ + c``
with the symmetric per-row RTN quantizer of ``layerlab.compress.quantize``:

.. math:: Q_b(W)_{ij} = s_i \operatorname{clamp}(\operatorname{round}(W_{ij}/s_i), -q_{\max}, q_{\max}),
          \quad s_i = \max_j |W_{ij}| / q_{\max}, \quad q_{\max} = 2^{b-1} - 1,

and the backward pass uses :math:`\partial Q_b(W)/\partial W := I` (the STE), so the latent weights
receive exactly the gradient of the loss with respect to the quantized weights,
:math:`\nabla_W \mathcal L = \nabla_{\hat W} \mathcal L|_{\hat W = Q_b(W)}` (tested to equality). The
scales are recomputed from the latent weights at every step and are constants for the gradient.
The optimizer updates the latent float weights; the biases stay float.

Hook: ``setup`` turns the model's ``nn.Linear`` modules (all but ``exclude`` and heads tied to an
embedding) into ``QatLinear`` (same parameters, same state-dict keys; only ``forward`` differs), so
checkpoints hold the latent weights and a run's evaluations see the quantized model. Applying RTN
at the same width to the latent weights after training (``layerlab compress RUN --technique rtn
--level b``) gives exactly the QAT forward pass: the quantizer here is written out again (floors:
methods cannot import compress) and tested bit-identical to ``compress.quantize``'s.
Options: ``bits`` (4; 2-16), ``exclude`` (module names kept in float, e.g. ``["head"]``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._layers import check_names
from .base import Method, RunContext

PAPER = Paper("Estimating or Propagating Gradients Through Stochastic Neurons for Conditional Computation", 2013,
              "1308.3432")
BEYOND_OUTLIERS = Paper("Beyond Outliers: A Study of Optimizers Under Quantization", 2025, "2509.23500")
_TINY = torch.finfo(torch.float64).tiny


def rtn_dequantized(w: Tensor, bits: int) -> Tensor:
    """``Q_b(W)`` in ``w``'s dtype: symmetric per-row round-to-nearest, the scale stored in ``w``'s
    dtype and the codes computed against it in float64 (as ``compress.quantize.symmetric_rtn``)."""
    qmax = 2 ** (bits - 1) - 1
    w64 = w.detach().to(torch.float64)
    scale = (w64.abs().amax(dim=1, keepdim=True) / qmax).to(w.dtype).to(torch.float64)
    codes = torch.round(w64 / scale.clamp_min(_TINY)).clamp_(-qmax, qmax)  # a zero row: 0 / tiny = 0
    return (codes * scale).to(w.dtype)


class _RoundSTE(torch.autograd.Function):
    """Forward: ``Q_b(W)``; backward: the incoming gradient unchanged (straight through)."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, bits: int) -> Tensor:  # type: ignore[override]
        return rtn_dequantized(w, bits)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def fake_quantize(w: Tensor, bits: int) -> Tensor:
    """``Q_b(w)`` in the forward pass, identity in the backward pass."""
    return _RoundSTE.apply(w, bits)


class QatLinear(nn.Linear):
    """An ``nn.Linear`` whose forward uses ``fake_quantize(weight, qat_bits)``; parameters unchanged."""

    qat_bits: int

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, fake_quantize(self.weight, self.qat_bits), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", qat_bits={self.qat_bits}"


def qat_linears(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Linear]:
    """The Linear modules QAT quantizes, in module order (not under ``exclude``, not tied to an embedding)."""
    linears = {n: m for n, m in model.named_modules() if type(m) in (nn.Linear, QatLinear)}
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(e for e in exclude if e not in names)
    if unknown:
        raise ConfigError(f"qat_ste: exclude names {unknown} are not submodules of the model; Linear modules: "
                          f"{sorted(linears)}")
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {n: m for n, m in linears.items()
            if id(m.weight) not in embedded and not any(n == e or n.startswith(e + ".") for e in exclude)}


def make_qat(model: nn.Module, bits: int, exclude: tuple[str, ...] = ()) -> list[str]:
    """Turn ``model``'s Linear modules into ``QatLinear`` of ``bits`` in place; their names."""
    chosen = qat_linears(model, exclude)
    if not chosen:
        raise ConfigError("qat_ste found no nn.Linear to quantize (or all are excluded); it quantizes Linear weights")
    for m in chosen.values():
        m.__class__ = QatLinear
        m.qat_bits = bits
    return list(chosen)


@register("method", "qat_ste", paper=PAPER)
class QatSTE(Method):
    """Quantization-aware training with the straight-through estimator (Bengio et al. 2013,
    arXiv:1308.3432; the QAT of Beyond Outliers, 2025, arXiv:2509.23500): forward with
    Q_b(W) = s ⊙ clamp(round(W/s), ±(2^(b−1)−1)), s_i = max_j|W_ij|/(2^(b−1)−1) per output row;
    backward ∂Q_b(W)/∂W := I. Hook: setup (Linear modules -> QatLinear).
    Options: ``bits`` (4, in [2, 16]), ``exclude`` (module names kept in float)."""

    def __init__(self, *, bits: int = 4, exclude: list[str] | None = None) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ConfigError(f"qat_ste: bits must be an integer in [2, 16] (symmetric RTN has no level at 1 bit), "
                              f"got {bits!r}")
        self.bits = bits
        self.exclude = check_names(exclude, "exclude", "qat_ste") or ()

    def setup(self, model: nn.Module, run: RunContext) -> None:
        self.quantized = make_qat(model, self.bits, self.exclude)
