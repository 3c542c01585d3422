"""The B-cos transform's output is bounded by ||x|| and reaches the bound only under alignment.

Paper: Böhle, Fritz & Schiele, "B-cos Networks: Alignment is All We Need for Interpretability",
2022, arXiv:2205.10268 (Sec. 3.1, the B-cos transform and its alignment pressure).

The B-cos transform of a unit with weight ``w`` (``ŵ = w / ||w||``) is::

    B-cos(x; w) = ||ŵ|| ||x|| |c(x, ŵ)|^B × sgn(c(x, ŵ)),   c(x, ŵ) = cos∠(x, ŵ)

so ``|B-cos(x; w)| = ||x|| |c|^B <= ||x||``, with equality only when ``x`` and ``w`` are
collinear (``|c| = 1``): a unit's output can only be large when its weight aligns with the
input, the source of the "alignment pressure" during training. For ``B > 1`` the response of a
misaligned input is suppressed below the linear unit's ``||x|| |c|``.

The measurement draws a layerlab ``BcosLinear`` (float64, weights from the seed) and measures,
over random inputs and every unit: (1) the bound's excess ``max(0, max_x |f_j(x)| / ||x|| - 1)``;
(2) ``max |f_j(x)| / ||x|| - |c|^B|`` (the closed form of the response); (3) at inputs aligned
with each weight (``x = a ŵ_j``, random ``a > 0``) the gap ``| |f_j(x)| / ||x|| - 1 |``.
``error`` is the largest of the three; ``mean_ratio`` (the mean ``|f|/||x||`` at random inputs,
far below 1) shows what misalignment costs.
"""
from __future__ import annotations

import torch

from ...blocks.channels.bcos import BcosLinear
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


@register_measure("bcos_alignment_bound", metric="error",
                  paper=Paper("B-cos Networks: Alignment is All We Need for Interpretability", 2022, "2205.10268"))
def bcos_alignment_bound(seed: int, *, d_in: int = 32, d_out: int = 16, B: float = 2.0,
                         n_inputs: int = 256) -> dict[str, float]:
    if d_in < 2 or d_out < 1 or n_inputs < 1 or not B >= 1:
        raise ConfigError(f"bcos_alignment_bound: need d_in >= 2, d_out >= 1, n_inputs >= 1, B >= 1; "
                          f"got d_in={d_in}, d_out={d_out}, n_inputs={n_inputs}, B={B}")
    g = torch.Generator().manual_seed(seed)
    layer = BcosLinear(d_in, d_out, B=B, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=g, dtype=torch.float64))
        w_hat = layer.weight / layer.weight.norm(dim=-1, keepdim=True)
        x = torch.randn(n_inputs, d_in, generator=g, dtype=torch.float64) * 3.0
        norm = x.norm(dim=-1, keepdim=True)
        ratio = layer(x).abs() / norm  # (n, out)
        cos = (x @ w_hat.T) / norm
        scale = 0.5 + 4.0 * torch.rand(d_out, 1, generator=g, dtype=torch.float64)
        aligned = scale * w_hat  # row j aligned with unit j
        r_aligned = layer(aligned).diagonal() / aligned.norm(dim=-1)
    excess = max(0.0, ratio.max().item() - 1.0)
    form = (ratio - cos.abs().pow(B)).abs().max().item()
    align_gap = (r_aligned - 1.0).abs().max().item()
    return {"error": max(excess, form, align_gap), "bound_excess": excess, "closed_form_error": form,
            "aligned_gap": align_gap, "mean_ratio": ratio.mean().item()}
