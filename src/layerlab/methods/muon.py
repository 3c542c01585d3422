"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for the hidden weight matrices.

Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein, "Muon: An optimizer for hidden layers in
neural networks" (2024, blog), in the form of Liu et al., "Muon is Scalable for LLM Training"
(2025, arXiv:2502.16982, Algorithm 1 and Sec. 2.2), for a weight W ∈ R^{A×B} with gradient G_t:

    M_t = μ M_{t−1} + G_t
    O_t = NewtonSchulz(M_t) · 0.2 · √max(A, B)
    W_t = W_{t−1} − η_t (O_t + λ W_{t−1}),

where NewtonSchulz approximates the orthogonal polar factor U Vᵀ of M = U S Vᵀ: X₀ = M / ‖M‖_F,
then five steps of the quintic X ← a X + b (X Xᵀ) X + c (X Xᵀ)² X with (a, b, c) =
(3.4445, −4.7750, 2.0315), which acts on each singular value as s ← a s + b s³ + c s⁵. Its
coefficients trade exactness for speed: after five steps the singular values land in a band
around 1 (about [0.68, 1.13] once they have entered it), not exactly at 1; the singular vectors
are exactly M's. The factor 0.2 √max(A, B) gives the update the RMS of an AdamW update, so one η
and λ serve the Muon and the AdamW parameters (Sec. 2.2). ``nesterov`` (Jordan's default) steps
along G_t + μ M_t instead of M_t.

Forms: ``newton_schulz`` (fast, matrix products), ``newton_schulz_reference`` (the same
polynomial applied to the singular values from an SVD: equal in exact arithmetic) and
``orthogonalize_svd`` (the exact polar factor U Vᵀ: ``orthogonalizer="svd"``).

As both papers do, only the hidden 2-D weights use Muon; embeddings, the input and output layers
(``adamw_layers``; default the backbones' ``proj`` and ``head``), biases and gains use AdamW
with the run's betas and eps. Method ``muon``; hook: ``make_optimizer``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._layers import (INPUT_NAMES, OUTPUT_NAMES, check_names, declared_no_decay, default_io, embedding_parameters,
                      module_parameters)
from .base import Method

PAPER = Paper("Muon is Scalable for LLM Training", 2025, "2502.16982")
QUINTIC = (3.4445, -4.7750, 2.0315)
ORTHOGONALIZERS = ("newton_schulz", "svd")


def newton_schulz(m: Tensor, steps: int = 5, coefficients: tuple[float, float, float] = QUINTIC,
                  eps: float = 1e-7) -> Tensor:
    """Fast form: X₀ = M/(‖M‖_F + eps), then ``steps`` of X ← aX + (b A + c A²) X with A = X Xᵀ,
    on the orientation with fewer rows (A is the smaller Gram matrix)."""
    if m.ndim != 2:
        raise ConfigError(f"newton_schulz orthogonalises a matrix; got a tensor of shape {tuple(m.shape)}")
    a, b, c = coefficients
    x = m / (torch.linalg.matrix_norm(m) + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def newton_schulz_reference(m: Tensor, steps: int = 5, coefficients: tuple[float, float, float] = QUINTIC,
                            eps: float = 1e-7) -> Tensor:
    """Reference form: M = U S Vᵀ, s ← S/(‖M‖_F + eps), ``steps`` of s ← a s + b s³ + c s⁵, U diag(s) Vᵀ."""
    a, b, c = coefficients
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    s = s / (torch.linalg.matrix_norm(m) + eps)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return u @ torch.diag(s) @ vh


def orthogonalize_svd(m: Tensor) -> Tensor:
    """The exact orthogonal polar factor U Vᵀ of M = U S Vᵀ (plain form)."""
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh


class Muon(torch.optim.Optimizer):
    """Muon on the groups with ``use_muon=True`` (2-D weights only), AdamW on the others.

    Muon group: W ← W(1 − ηλ) − η · scale · orth(u), u = G + μM (nesterov) or M, M ← μM + G,
    scale = 0.2 √max(A, B) (``rms_match``) or max(1, A/B)^(1/2) (Jordan's original).
    AdamW group: the decoupled update of torch.optim.AdamW (bias-corrected moments).
    """

    def __init__(self, params: Any, lr: float = 1e-3, *, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, orthogonalizer: str = "newton_schulz",
                 rms_match: bool = True, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if orthogonalizer not in ORTHOGONALIZERS:
            raise ConfigError(f"muon: orthogonalizer must be one of {ORTHOGONALIZERS}, got {orthogonalizer!r}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                        orthogonalizer=orthogonalizer, rms_match=rms_match, betas=tuple(betas), eps=eps,
                        use_muon=False)
        super().__init__(params, defaults)
        for g in self.param_groups:
            if g["use_muon"] and any(p.ndim != 2 for p in g["params"]):
                raise ConfigError("muon: a group with use_muon=True holds a parameter that is not a 2-D matrix; "
                                  "put vectors (biases, gains) in an AdamW group")

    def orthogonalize(self, u: Tensor, group: dict[str, Any]) -> Tensor:
        wide = u.to(torch.promote_types(u.dtype, torch.float32))
        if group["orthogonalizer"] == "svd":
            return orthogonalize_svd(wide)
        return newton_schulz(wide, steps=group["ns_steps"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if group["use_muon"]:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.zeros_like(p)
                    buf.mul_(group["momentum"]).add_(g)
                    u = g + group["momentum"] * buf if group["nesterov"] else buf
                    a, b = p.shape
                    scale = 0.2 * math.sqrt(max(a, b)) if group["rms_match"] else math.sqrt(max(1.0, a / b))
                    p.mul_(1 - lr * wd)
                    p.add_(self.orthogonalize(u, group).to(p.dtype), alpha=-lr * scale)
                else:
                    beta1, beta2 = group["betas"]
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] += 1
                    t = state["step"]
                    state["exp_avg"].lerp_(g, 1 - beta1)
                    state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["eps"])
                    p.mul_(1 - lr * wd)
                    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))
        return loss


def muon_groups(model: nn.Module, *, weight_decay: float, adamw_layers: tuple[str, ...] | None = None,
                skip: set[int] = frozenset()) -> list[dict[str, Any]]:
    """Hidden 2-D weights -> a Muon group; the input/output layers' and embeddings' weights -> an
    AdamW group with decay; biases, gains and ``skip`` (no_weight_decay) -> AdamW without decay."""
    names = default_io(model, INPUT_NAMES + OUTPUT_NAMES) if adamw_layers is None else adamw_layers
    io = module_parameters(model, names, "adamw_layers", "muon") | embedding_parameters(model)
    hidden, io_decay, vectors = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or id(p) in skip:
            vectors.append(p)
        elif p.ndim == 2 and id(p) not in io:
            hidden.append(p)
        else:
            io_decay.append(p)
    groups = [{"params": hidden, "name": "muon", "use_muon": True, "weight_decay": weight_decay},
              {"params": io_decay, "name": "adamw", "use_muon": False, "weight_decay": weight_decay},
              {"params": vectors, "name": "adamw_no_decay", "use_muon": False, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


@register("method", "muon", paper=PAPER)
class MuonMethod(Method):
    """Muon (Jordan et al. 2024; in the form of Liu et al., "Muon is Scalable for LLM Training", 2025,
    arXiv:2502.16982): M_t = μM_{t−1} + G_t, W_t = W_{t−1} − η_t(0.2 √max(A,B) NewtonSchulz(M_t) + λW_{t−1})
    on the hidden 2-D weights, AdamW (the run's betas, eps, λ) on the rest, one η_t for both.
    Hook: optimizer (the run's optimizer must be AdamW, whose settings it takes).

    Options: ``momentum`` μ (0.95), ``nesterov`` (true), ``ns_steps`` (5), ``orthogonalizer``
    ("newton_schulz" or "svd": the exact U Vᵀ), ``rms_match`` (true: 0.2 √max(A,B); false:
    Jordan's max(1, A/B)^(1/2)), ``adamw_layers`` (submodules kept on AdamW; default proj, head).
    """

    def __init__(self, *, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 orthogonalizer: str = "newton_schulz", rms_match: bool = True,
                 adamw_layers: list[str] | None = None) -> None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ConfigError(f"muon: momentum must be a number in [0, 1), got {momentum!r}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
            raise ConfigError(f"muon: ns_steps must be an integer >= 1 (the paper's 5), got {ns_steps!r}")
        for key, v in (("nesterov", nesterov), ("rms_match", rms_match)):
            if not isinstance(v, bool):
                raise ConfigError(f"muon: {key} must be true or false, got {v!r}")
        if orthogonalizer not in ORTHOGONALIZERS:
            raise ConfigError(f"muon: orthogonalizer must be one of {', '.join(ORTHOGONALIZERS)}, got {orthogonalizer!r}")
        self.momentum, self.nesterov, self.ns_steps = float(momentum), nesterov, ns_steps
        self.orthogonalizer, self.rms_match = orthogonalizer, rms_match
        self.adamw_layers = check_names(adamw_layers, "adamw_layers", "muon")

    def make_optimizer(self, model: nn.Module, default: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        run_opt = default()
        if not isinstance(run_opt, torch.optim.AdamW):
            raise ConfigError(f"muon takes the run's AdamW settings for its AdamW part; the run's optimizer is "
                              f"{type(run_opt).__name__}. Set optim.name = 'adamw'")
        g0 = run_opt.param_groups[0]
        wd = max(g["weight_decay"] for g in run_opt.param_groups)
        groups = muon_groups(model, weight_decay=wd, adamw_layers=self.adamw_layers, skip=declared_no_decay(model))
        return Muon(groups, lr=g0["lr"], momentum=self.momentum, nesterov=self.nesterov, ns_steps=self.ns_steps,
                    orthogonalizer=self.orthogonalizer, rms_match=self.rms_match, betas=g0["betas"], eps=g0["eps"])
