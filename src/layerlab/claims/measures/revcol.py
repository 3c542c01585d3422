"""RevCol: the reversible backward gives plain autograd's gradients while storing activations
independent of the number of columns.

Paper: Cai et al., "Reversible Column Networks", 2022, arXiv:2212.11696 (Sec. 3: reversible
multi-level connections ``x_l^i = F_l(x_{l-1}^i, x_{l+1}^{i-1}) + γ x_l^{i-1}``; the previous column
is recomputed from the next one, so training memory does not grow with the columns).

Per seed: ``layerlab.models.revcol.RevCol`` (float64, d = 16, L = levels) in its reversible and plain
forms with the same weights (perturbed from the seed's generator). Returned::

    grad_error  = max over parameters and input of |g_rev - g_plain| / max |g_plain|
    growth      = saved_rev(columns_hi) / saved_rev(columns_lo) - 1      (0: constant memory)
    error       = max(grad_error, |growth|)
    ratio       = saved_rev(columns_hi) / saved_plain(columns_hi)          (the saving)

where ``saved`` counts the bytes autograd stores for the backward (``saved_tensors_hooks``).
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...models.revcol import RevCol
from ...registry import Paper
from . import register_measure


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``model(x).sum()``."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return total


def _pair(seed: int, columns: int, levels: int, g: torch.Generator) -> tuple[RevCol, RevCol]:
    with torch.random.fork_rng(devices=[]):
        rev = RevCol(12, 16, 5, columns=columns, levels=levels, reversible=True, dtype=torch.float64)
        plain = RevCol(12, 16, 5, columns=columns, levels=levels, reversible=False, dtype=torch.float64)
    with torch.no_grad():
        for p in rev.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    plain.load_state_dict(rev.state_dict())
    return rev, plain


@register_measure("revcol_reversible_memory", metric="error",
                  paper=Paper("Reversible Column Networks", 2022, "2212.11696"))
def revcol_reversible_memory(seed: int, *, columns_lo: int = 2, columns_hi: int = 8, levels: int = 3,
                             batch: int = 32) -> dict[str, float]:
    if not 1 <= columns_lo < columns_hi or levels < 1 or batch < 1:
        raise ConfigError(f"revcol_reversible_memory: need 1 <= columns_lo < columns_hi, levels, batch >= 1; "
                          f"got {columns_lo}, {columns_hi}, {levels}, {batch}")
    g = torch.Generator().manual_seed(seed)
    rev, plain = _pair(seed, columns_hi, levels, g)
    x = torch.randn(batch, 12, generator=g, dtype=torch.float64)
    w = torch.randn(batch, 5, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (rev(xa) * w).sum().backward()
    (plain(xb) * w).sum().backward()
    pairs = [(xa.grad, xb.grad)] + [(p.grad, q.grad) for p, q in zip(rev.parameters(), plain.parameters())]
    scale = max(b.abs().max().item() for _, b in pairs)
    grad_error = max((a - b).abs().max().item() for a, b in pairs) / scale
    hi_rev, hi_plain = saved_bytes(rev, x), saved_bytes(plain, x)
    lo_rev = saved_bytes(_pair(seed, columns_lo, levels, g)[0], x)
    growth = hi_rev / lo_rev - 1
    return {"error": max(grad_error, abs(growth)), "grad_error": grad_error, "growth": growth,
            "ratio": hi_rev / hi_plain}
