"""⊥Grad: the gradient of each weight tensor with its component along the weights removed.

Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability" (2025,
arXiv:2501.04697). Past the point of fitting the training set, the gradient aligns with the
naïve-loss-minimisation direction: scaling the weights along themselves, which scales the logits
and lowers the loss without changing a prediction, until Softmax Collapse stops learning. ⊥Grad
keeps only the part of each weight tensor's gradient orthogonal to it:

    ∇⊥L(θ) = ∇L(θ) − (θᵀ∇L(θ) / θᵀθ) θ,

and, as the issue states and the authors' release does, rescales it to the gradient's norm,
‖∇⊥L(θ)‖ ← ‖∇L(θ)‖, so the optimizer (⊥AdamW, ⊥SGD: any) sees a step of the same size.

Each parameter tensor θ is one vector (flattened). Where θ = 0 (a zero-initialised bias) there is
no direction to remove and the gradient is left as it is; where the orthogonal part vanishes
(‖∇⊥‖ <= eps ‖∇‖), the gradient becomes zero. Computed in float32 or wider, written back in the
parameter's dtype. Hook: ``transform_gradients`` (after the run's clipping, which ⊥Grad commutes
with: the projection is linear and the rescaling scale-equivariant).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method

PAPER = Paper("Grokking at the Edge of Numerical Stability", 2025, "2501.04697")


def orthogonal_gradient(w: Tensor, g: Tensor, *, rescale: bool = True, eps: float = 1e-30) -> Tensor:
    """∇⊥ = g − (⟨w, g⟩ / ⟨w, w⟩) w, rescaled to ‖g‖ (reference form: one tensor, as in the math)."""
    wide = torch.promote_types(g.dtype, torch.float32)
    w64, g64 = w.to(wide).flatten(), g.to(wide).flatten()
    ww = torch.dot(w64, w64)
    if ww == 0:
        return g.clone()
    perp = g64 - (torch.dot(w64, g64) / ww) * w64
    if rescale:
        norm_g, norm_perp = torch.linalg.vector_norm(g64), torch.linalg.vector_norm(perp)
        perp = perp * (norm_g / norm_perp) if norm_perp > eps * norm_g else torch.zeros_like(perp)
    return perp.view_as(g).to(g.dtype)


@register("method", "orthograd", paper=PAPER)
class OrthoGrad(Method):
    """⊥Grad (Prieto et al., "Grokking at the Edge of Numerical Stability", 2025, arXiv:2501.04697):
    each parameter's gradient projected orthogonally to the parameter, ∇⊥L(θ) = ∇L(θ) −
    (θᵀ∇L(θ) / θᵀθ) θ, then rescaled to ‖∇L(θ)‖ (``rescale``). Hook: gradients.

    Options: ``rescale`` (default True), ``eps`` (an orthogonal part below ``eps ‖∇L‖`` is zero).
    """

    def __init__(self, *, rescale: bool = True, eps: float = 1e-30) -> None:
        if not isinstance(rescale, bool):
            raise ConfigError(f"orthograd: rescale must be true or false, got {rescale!r}")
        if not eps >= 0:
            raise ConfigError(f"orthograd: eps must be >= 0, got {eps!r}")
        self.rescale, self.eps = rescale, float(eps)

    @torch.no_grad()
    def transform_gradients(self, model: nn.Module, step: int) -> None:
        params = [p for p in model.parameters() if p.grad is not None]
        if not params:
            return
        # fast form: every tensor at once (one reduction per tensor through foreach ops)
        wide = torch.promote_types(params[0].dtype, torch.float32)
        ws = [p.detach().to(wide).flatten() for p in params]
        gs = [p.grad.to(wide).flatten() for p in params]
        ww = torch.stack([torch.dot(w, w) for w in ws])
        wg = torch.stack([torch.dot(w, g) for w, g in zip(ws, gs)])
        coef = torch.where(ww > 0, wg / torch.where(ww > 0, ww, torch.ones_like(ww)), torch.zeros_like(ww))
        perps = [g - c * w for g, w, c in zip(gs, ws, coef.unbind())]
        if self.rescale:
            ng = torch.stack(torch._foreach_norm(gs))
            npp = torch.stack(torch._foreach_norm(perps))
            ok = npp > self.eps * ng
            scale = torch.where(ok, ng / torch.where(ok, npp, torch.ones_like(npp)), torch.zeros_like(npp))
            scale = torch.where(ww > 0, scale, torch.ones_like(scale))
            perps = [q * s for q, s in zip(perps, scale.unbind())]
        for p, q in zip(params, perps):
            p.grad.copy_(q.view_as(p.grad))
