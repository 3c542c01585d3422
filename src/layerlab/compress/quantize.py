r"""Round-to-nearest (RTN) post-training quantization of Linear weights: symmetric, per output channel.

The quantizer. For a weight ``W`` (out x in) and ``b`` bits, with :math:`q_{\max} = 2^{b-1} - 1`,
each output channel (row) ``i`` gets one scale and every entry one integer code:

.. math:: s_i = \frac{\max_j |W_{ij}|}{q_{\max}}, \qquad
          q_{ij} = \operatorname{clamp}\big(\operatorname{round}(W_{ij}/s_i), -q_{\max}, q_{\max}\big),
          \qquad \hat W_{ij} = s_i\, q_{ij}.

Since :math:`|W_{ij}|/s_i \le q_{\max}`, the clamp never cuts and every entry is within half a step:
:math:`|\hat W_{ij} - W_{ij}| \le s_i/2` (tested exactly). The range is the restricted symmetric one
(``-2^{b-1}`` unused), so zero is exact and the code of a row's largest entry is ``±q_max``. A row of
zeros gets scale 0 and codes 0. ``round`` is round-half-to-even (``torch.round``). The scale is
stored in the weight's dtype (float32: 32 extra bits per row) and the codes are computed against
the *stored* scale in float64, so the bound holds for the stored pair.

Where it comes from. RTN is the baseline post-training quantizer of weights (e.g. Nagel et al., "A
White Paper on Neural Network Quantization", 2021, arXiv:2106.08295, Sec. 2); it has no paper of its
own. It is registered under Vlassis, Ashkboos, Volkova, Hoefler & Alistarh, "Beyond Outliers: A
Study of Optimizers Under Quantization" (2025, arXiv:2509.23500), whose claim layerlab checks with it
(abstract, verified: models trained with six optimizers, then post-training quantization; "outlier-
related metrics, such as the max-to-mean ratio (MMR) and Kurtosis, fail to predict the PTQ
performance across different optimizers"). Which PTQ scheme the paper applies (RTN, GPTQ; weights
only or weights and activations) could not be read beyond its abstract; here it is weight-only RTN.

What is stored. ``rtn`` returns a copy of the model in which every ``nn.Linear`` (except ``exclude``
and heads tied to an embedding) is a ``QuantizedLinear``: integer ``codes`` (int8 up to 8 bits, int16
up to 16, int32 up to 32), per-row ``scale`` and the float ``bias``, with ``bits_per_weight = b`` and
``quantized_tensors = ("codes",)``: the code container is wider than ``b`` bits, so
``compress.savings`` counts the codes at ``b`` bits (after checking they span at most ``2^b``
values) and the scales and bias at their own width. Inference is *simulated*: the forward pass dequantizes
``codes * scale`` to the input's dtype and runs a float matmul (no integer kernels on CPU), so it is
not faster than the dense model; the saving is memory (bits), not time.

``quantize_linears(model, {name: bits})`` quantizes chosen layers at chosen widths (the mixed-precision
techniques reuse it); ``symmetric_rtn`` and ``dequantize`` are the quantizer itself.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper
from .registry import CompressContext, register_technique

BEYOND_OUTLIERS = Paper("Beyond Outliers: A Study of Optimizers Under Quantization", 2025, "2509.23500")
LEVELS = (8, 6, 4, 3)
MIN_BITS, MAX_BITS = 2, 32


def check_bits(bits: float, what: str = "bits") -> int:
    """A whole number of bits in [2, 32], or a ConfigError saying why (1 bit has no symmetric level)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or not float(bits).is_integer():
        raise ConfigError(f"{what} must be a whole number of bits in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    b = int(bits)
    if not MIN_BITS <= b <= MAX_BITS:
        raise ConfigError(f"{what} must be in [{MIN_BITS}, {MAX_BITS}], got {b}: symmetric RTN with b bits has "
                          f"2^(b-1) - 1 positive levels (none at b = 1); use b >= 2")
    return b


def code_dtype(bits: int) -> torch.dtype:
    """The narrowest integer container of ``bits``-bit codes."""
    return torch.int8 if bits <= 8 else torch.int16 if bits <= 16 else torch.int32


def symmetric_rtn(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """``(codes, scale)`` of ``w`` (out x in): integer codes in [-q_max, q_max] (``code_dtype``) and
    one scale per row in ``w``'s dtype, ``scale = max_j |w_ij| / q_max``."""
    if w.ndim != 2:
        raise ConfigError(f"symmetric_rtn quantizes a matrix (out x in); got shape {tuple(w.shape)}")
    bits = check_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    w64 = w.detach().to(torch.float64)
    scale = (w64.abs().amax(dim=1) / qmax).to(w.dtype)  # stored scale
    s64 = scale.to(torch.float64).clamp_min(torch.finfo(torch.float64).tiny)  # a zero row: codes 0 / tiny = 0
    codes = torch.round(w64 / s64[:, None]).clamp_(-qmax, qmax)
    return codes.to(code_dtype(bits)), scale


def dequantize(codes: Tensor, scale: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``scale_i * codes_ij`` in ``dtype`` (default the scale's): the product rounded once."""
    dtype = scale.dtype if dtype is None else dtype
    return (codes.to(torch.float64) * scale.to(torch.float64)[:, None]).to(dtype)


class QuantizedLinear(nn.Module):
    """``y = x Ŵᵀ + b`` with ``Ŵ = scale[:, None] * codes`` dequantized at each call (simulated
    quantization). Stores ``codes`` (int buffer), ``scale`` (float buffer, one per output row) and the
    float ``bias`` (a parameter, not quantized); ``bits_per_weight`` is the code width. ``weight`` is
    the dequantized matrix (read-only), for code that reads ``.weight`` of a Linear.
    ``quantized_tensors`` names the tensor stored at ``bits_per_weight`` (``compress.savings``)."""

    quantized_tensors = ("codes",)

    def __init__(self, codes: Tensor, scale: Tensor, bias: Tensor | None, bits: int) -> None:
        super().__init__()
        bits = check_bits(bits)
        if codes.ndim != 2 or scale.shape != (codes.shape[0],):
            raise ConfigError(f"QuantizedLinear needs codes (out, in) and scale (out,); got {tuple(codes.shape)} "
                              f"and {tuple(scale.shape)}")
        self.out_features, self.in_features = codes.shape
        self.bits_per_weight = bits
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int) -> "QuantizedLinear":
        codes, scale = symmetric_rtn(linear.weight, bits)
        return cls(codes, scale, linear.bias, bits)

    @property
    def weight(self) -> Tensor:
        return dequantize(self.codes, self.scale)

    def forward(self, x: Tensor) -> Tensor:
        w = dequantize(self.codes, self.scale, x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits_per_weight}, "
                f"bias={self.bias is not None}")


def quantizable_linears(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Linear]:
    """``{module name: nn.Linear}`` RTN would quantize, in module order: every Linear but those named
    in ``exclude`` (a name also excludes the Linears under it) and heads tied to an embedding table."""
    exclude = _names(exclude)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    prefixes = {n.rsplit(".", k)[0] for n in linears for k in range(0, n.count(".") + 1)}
    unknown = sorted(e for e in exclude if e not in prefixes)
    if unknown:
        raise ConfigError(f"exclude names {unknown} match no Linear module; Linear modules: {sorted(linears)}")
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}

    def excluded(name: str) -> bool:
        return any(name == e or name.startswith(e + ".") for e in exclude)

    return {n: m for n, m in linears.items() if not excluded(n) and id(m.weight) not in embedded}


def _names(names: Iterable[str] | str | None) -> tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str):
        return tuple(s.strip() for s in names.split(",") if s.strip())
    out = tuple(names)
    if not all(isinstance(s, str) for s in out):
        raise ConfigError(f"exclude must be module names (strings), got {out!r}")
    return out


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_linears(model: nn.Module, bits: Mapping[str, int]) -> nn.Module:
    """A deep copy of ``model`` with the Linear modules named in ``bits`` replaced by RTN
    ``QuantizedLinear``s of their widths; the input is not modified."""
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    unknown = sorted(set(bits) - set(linears))
    if unknown:
        raise ConfigError(f"no Linear module named {unknown}; Linear modules: {sorted(linears)}")
    widths = {n: check_bits(b, f"bits of {n!r}") for n, b in bits.items()}
    out = copy.deepcopy(model)
    for name, b in widths.items():
        _replace(out, name, QuantizedLinear.from_linear(out.get_submodule(name), b))
    return out


@register_technique("rtn", paper=BEYOND_OUTLIERS, level_kind="bits", levels=LEVELS)
def rtn(model: nn.Module, level: float, ctx: CompressContext | None = None, *,
        exclude: tuple[str, ...] | str = ()) -> nn.Module:
    """Every Linear weight of a copy of ``model`` to ``level``-bit symmetric per-row RTN codes
    (``QuantizedLinear``), except the modules named in ``exclude``. Data-free: ``ctx`` is not read."""
    b = check_bits(level, "rtn level")
    chosen = quantizable_linears(model, exclude)
    if not chosen:
        raise ConfigError("rtn found no nn.Linear to quantize in the model (or all are excluded); "
                          "RTN here quantizes Linear weights only")
    return quantize_linears(model, {n: b for n in chosen})
