r"""Hessian-aware mixed-precision PTQ against uniform RTN at the same average bits, on digits.

Paper: Schaefer et al., "Augmenting Hessians with Inter-Layer Dependencies for Mixed-Precision
Post-Training Quantization", 2023, arXiv:2306.04879 (abstract verified): per-tensor precisions from
the Hessian "augmented" with inter-layer dependencies improve PTQ "along the accuracy-latency Pareto
frontier", where layer-wise Hessian information alone orders layer sensitivities poorly.

The measurement, per seed: a ReLU MLP (``width`` x ``depth``, ``depth + 1`` Linear layers) trained on
digits by AdamW (``_quantize_digits.train_digits``), then quantized at an average of ``level`` bits
per weight in three ways, all weight-only symmetric per-row RTN (``compress.quantize``):

- ``uniform``: every layer at ``level`` bits (``rtn``);
- ``interlayer``: ``compress.mixed_precision`` with exact Hessian blocks and the consecutive
  inter-layer cross terms (its default), bit widths from ``bit_choices``;
- ``hawq``: the same with HAWQ-V2's layer-wise trace term only (``curvature="trace"``,
  ``interlayer=False``), the "layer-wise Hessian information" baseline;
- ``block``: exact layer blocks without the cross terms (recorded).

Curvature on a calibration batch of ``calibration`` training examples. Keys: ``float_accuracy``,
``{way}_accuracy``, ``{way}_loss`` (test), ``{way}_bits`` (the average bits of the allocation,
read from the returned modules' ``bits_per_weight``), ``{way}_differs`` (1 when the allocation is
not uniform), the measured ``{way}_bits_ratio`` (``compress.savings.measure_cost``: all stored bits
against the float model's, scales and biases included), and

- ``error`` = ``uniform_accuracy - interlayer_accuracy``: negative when the Hessian-aware mixed
  precision is more accurate than uniform at the same average bits;
- ``error_vs_hawq`` = ``hawq_accuracy - interlayer_accuracy``: negative when the inter-layer terms
  help over the layer-wise trace.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...compress import CompressContext
from ...compress.mixed_precision import BIT_CHOICES, hessian_mixed_precision
from ...compress.quantize import rtn
from ...compress.savings import measure_cost
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits
from ._fit import one_thread
from ._quantize_digits import evaluate, train_digits

PAPER = Paper("Augmenting Hessians with Inter-Layer Dependencies for Mixed-Precision Post-Training Quantization",
              2023, "2306.04879")
WAYS = {"interlayer": {"curvature": "block", "interlayer": True},
        "hawq": {"curvature": "trace", "interlayer": False},
        "block": {"curvature": "block", "interlayer": False}}


def average_bits(model: nn.Module) -> float:
    """Weights-weighted mean ``bits_per_weight`` of the quantized modules (read from the model)."""
    mods = [m for m in model.modules() if hasattr(m, "bits_per_weight")]
    n = sum(m.codes.numel() for m in mods)
    return sum(m.codes.numel() * m.bits_per_weight for m in mods) / n


@register_measure("hessian_mixed_precision_digits", metric="error", paper=PAPER)
def hessian_mixed_precision_digits(seed: int, *, level: int = 3, bit_choices: list[int] = BIT_CHOICES,
                                   width: int = 64, depth: int = 3, steps: int = 1500, lr: float = 3e-3,
                                   batch: int = 64, calibration: int = 256, n_samples: int = 64) -> dict[str, float]:
    if calibration < 1:
        raise ConfigError(f"hessian_mixed_precision_digits: calibration must be >= 1 examples, got {calibration}")
    d = digits_splits()
    (x, y), (xt, yt) = d["train"], d["test"]
    out: dict[str, float] = {}
    with one_thread():
        net = train_digits(x, y, seed, optimizer="adamw", lr=lr, width=width, depth=depth, steps=steps, batch=batch)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=gen)[:calibration]
        ctx = CompressContext(task=None, calibration=(x[idx], y[idx]), generator=gen,
                              loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]))
        out["float_loss"], out["float_accuracy"] = evaluate(net, xt, yt)
        dense_bits = measure_cost(net, xt).bits
        models = {"uniform": rtn(net, level)}
        for way, opts in WAYS.items():
            models[way] = hessian_mixed_precision(net, level, ctx, bit_choices=list(bit_choices),
                                                  n_samples=n_samples, **opts)
        uniform_bits = [m.bits_per_weight for m in models["uniform"].modules() if hasattr(m, "bits_per_weight")]
        for way, model in models.items():
            out[f"{way}_loss"], out[f"{way}_accuracy"] = evaluate(model, xt, yt)
            out[f"{way}_bits"] = average_bits(model)
            widths = [m.bits_per_weight for m in model.modules() if hasattr(m, "bits_per_weight")]
            out[f"{way}_differs"] = float(widths != uniform_bits)
            out[f"{way}_bits_ratio"] = measure_cost(model, xt).bits / dense_bits
    out["error"] = out["uniform_accuracy"] - out["interlayer_accuracy"]
    out["error_vs_hawq"] = out["hawq_accuracy"] - out["interlayer_accuracy"]
    return out
