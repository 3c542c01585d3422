"""The antiderivative operator u -> ∫₀ˣ u: DeepONet's first example, a small operator-learning task."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from ._function import FunctionTask, check_field_sizes, rff_coefficients, rff_values
from .base import Batch
from .registry import register_task


@register_task("antiderivative")
@dataclass
class Antiderivative(FunctionTask):
    r"""Learn the operator G(u)(x) = s(x) = ∫₀ˣ u(τ) dτ on [0, 1] from u at m sensors.

    DeepONet's first example (Lu et al. 2019, arXiv:1910.03193, Section 4.1: ds/dx = u(x),
    s(0) = 0, u from a Gaussian random field with an RBF kernel of length scale l = 0.2, m = 100
    sensors). Input functions here are random Fourier features of that field (Rahimi & Recht
    2007)::

        u(x) = √(2/R) Σ_{r=1}^{R} w_r cos(ω_r x + φ_r),   w_r ~ N(0, 1), ω_r ~ N(0, 1/l²), φ_r ~ U[0, 2π)

    whose covariance tends to exp(-(x - x')² / (2 l²)) as R -> ∞ (R = ``features``). Their
    antiderivative is exact, in closed form::

        s(x) = √(2/R) Σ_r w_r (sin(ω_r x + φ_r) - sin φ_r) / ω_r
             = √(2/R) Σ_r w_r x cos(φ_r + ω_r x / 2) sinc(ω_r x / 2π)      (no division by ω_r)

    Sensors and queries are the same uniform grid x_i = i / (m - 1), i = 0..m-1 (m = ``sensors``).
    Inputs (B, m) float64: u(x_i); targets (B, m) float64: s(x_i) (``input_kind = "function"``,
    no mask). The task exposes ``sensors`` (the grid) and ``queries`` (the grid as (m, 1) points).

    Splits: a fixed training set of ``n_train`` functions (batch_size <= 0: all of it; otherwise
    rows drawn with replacement) and ``n_eval`` validation and test functions, each drawn from its
    own generator stream (seeded by the split's name and ``data_seed``); the tests check that no
    function appears in two splits.

    Loss: mean squared error over functions and points. Metric: ``rel_l2``, the mean over
    functions of ‖ŝ - s‖₂ / ‖s‖₂ over the grid (lower is better; ``mse`` is reported too).
    Chance: 1.0, the relative error of predicting s = 0 (``tasks/_function.py``).
    """

    name: ClassVar[str] = "antiderivative"

    m: int = 50
    length_scale: float = 0.2
    features: int = 64
    n_train: int = 1000
    n_eval: int = 500
    data_seed: int = 0

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.m < 2:
            raise ConfigError(f"{where}: m must be >= 2 (a grid on [0, 1]), got {self.m}")
        check_field_sizes(where, self.length_scale, self.features, self.n_train, self.n_eval)

    # --- sizes --------------------------------------------------------------------------
    @property
    def sensors(self) -> Tensor:
        """The m sensor points x_i = i / (m - 1), float64."""
        return torch.linspace(0.0, 1.0, self.m, dtype=torch.float64)

    # --- the functions ------------------------------------------------------------------
    def functions(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients (w, ω, φ), each (n, R) float64, of n random input functions."""
        return rff_coefficients(n, self.features, self.length_scale, gen)

    def u(self, coeffs: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
        """u(x) of each function at points x (k,): (n, k)."""
        return rff_values(coeffs, x)

    def antiderivative(self, coeffs: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
        """s(x) = ∫₀ˣ u of each function at points x (k,), exactly: (n, k)."""
        w, omega, phi = coeffs
        scale = math.sqrt(2.0 / self.features)
        ox = omega[..., None] * x  # (n, R, k)
        terms = x * torch.cos(phi[..., None] + ox / 2) * torch.sinc(ox / (2 * math.pi))
        return scale * torch.einsum("nr,nrk->nk", w, terms)

    def draw(self, n: int, gen: torch.Generator) -> Batch:
        coeffs = self.functions(n, gen)
        x = self.sensors
        return Batch(self.u(coeffs, x), self.antiderivative(coeffs, x))

    def oracle(self, batch: Batch) -> Tensor:
        """The trapezoidal antiderivative of the sensor values (exact up to h²/12 · max|u''|)."""
        return cumulative_trapezoid(batch.inputs.to(torch.float64), 1.0 / (self.m - 1))


def cumulative_trapezoid(values: Tensor, h: float) -> Tensor:
    """∫₀^{x_j} by the trapezoidal rule on a uniform grid of spacing h, at every grid point: (..., m)."""
    mids = (values[..., 1:] + values[..., :-1]) * (h / 2)
    return torch.cat([torch.zeros_like(values[..., :1]), mids.cumsum(-1)], dim=-1)
