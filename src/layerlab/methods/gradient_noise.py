"""Annealed Gaussian gradient noise.

Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens, "Adding Gradient Noise Improves
Learning for Very Deep Networks" (2015, arXiv:1511.06807). At every training step t the gradient
gets time-dependent Gaussian noise,

    g_t ← g_t + N(0, σ_t²),    σ_t² = η / (1 + t)^γ,

independent for every coordinate; the paper uses η ∈ {0.01, 0.3, 1.0} and γ = 0.55, on top of
SGD or Adam. Here t is the 0-based optimizer step (σ_0² = η) and the noise is drawn from the
method's own generator on the run's device, in the parameter's dtype. Hook:
``transform_gradients`` (after the run's gradient clipping, so the noise is not clipped: set
``optim.grad_clip = 0`` to follow the paper's plain SGD).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method

PAPER = Paper("Adding Gradient Noise Improves Learning for Very Deep Networks", 2015, "1511.06807")


def noise_variance(t: int, eta: float, gamma: float) -> float:
    """σ_t² = η / (1 + t)^γ."""
    return eta / (1.0 + t) ** gamma


@register("method", "gradient_noise", paper=PAPER)
class GradientNoise(Method):
    """Annealed gradient noise (Neelakantan et al., "Adding Gradient Noise Improves Learning for
    Very Deep Networks", 2015, arXiv:1511.06807): g_t ← g_t + N(0, σ_t²), σ_t² = η / (1 + t)^γ.
    Hook: gradients. Options: ``eta`` (default 0.01), ``gamma`` (default 0.55).
    """

    def __init__(self, *, eta: float = 0.01, gamma: float = 0.55) -> None:
        if not (isinstance(eta, (int, float)) and eta >= 0 and math.isfinite(eta)):
            raise ConfigError(f"gradient_noise: eta must be a finite number >= 0, got {eta!r}")
        if not (isinstance(gamma, (int, float)) and gamma >= 0 and math.isfinite(gamma)):
            raise ConfigError(f"gradient_noise: gamma must be a finite number >= 0, got {gamma!r}")
        self.eta, self.gamma = float(eta), float(gamma)

    @torch.no_grad()
    def transform_gradients(self, model: nn.Module, step: int) -> None:
        sigma = math.sqrt(noise_variance(step, self.eta, self.gamma))
        for p in model.parameters():
            if p.grad is not None:
                z = torch.randn(p.grad.shape, generator=self.generator, device=p.grad.device, dtype=p.grad.dtype)
                p.grad.add_(z, alpha=sigma)
