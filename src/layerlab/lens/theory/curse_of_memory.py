r"""The memory of a sequence map, the curse of memory of RNNs, and stable reparameterization.

Paper: Wang, Li & Li, "Inverse Approximation Theory for Nonlinear Recurrent Neural Networks", 2023,
arXiv:2305.19190 (ICLR 2024): Sec. 3 (memory function, stable approximation, the Bernstein-type
theorem), Sec. 4 (stable reparameterization), and the authors' code (radarFudan/Curse-of-memory:
``memoryfunction.py``, ``perturb.py``, the linear-functional data ``lf/datagen.py``).

Memory function. For a causal sequence map ``H`` and the Heaviside input ``u^x_t = x`` (t >= 0), the
paper's memory is ``M(H)(t) = sup_{x != 0} |d/dt H_t(u^x)| / (|x| + 1)``; in discrete time (as the
authors' code, which differences ``y_{t+1} - y_t`` on a Heaviside input) ::

    M(H)(t) = max_{x in amplitudes} |H_{t+1}(u^x) - H_t(u^x)| / (|x| + 1)

(:func:`memory_function`). For a linear functional ``y_t = sum_{s=0}^{t} rho(s) x_{t-s}`` it is
``|rho(t+1)| max |x| / (|x| + 1)``: the memory is the kernel. The code's targets (time step
``dt``, kernel ``rho(s dt) dt``): exponential ``rho(t) = e^{-t}`` and polynomial
``rho(t) = (1 + 0.1 t)^{-1.1}`` (:func:`target_kernel`).

Curse of memory (the theorem): if a target is *stably* approximated by RNNs — the perturbed error
``E_m(beta) = sup_{|W~ - W_m| <= beta} || H - H^(W~) ||`` of the width-``m`` approximants tends to
0 as ``beta -> 0``, uniformly in ``m`` (Def. of stable approximation) — then its memory decays
exponentially. A target with polynomial memory can be approximated (universal approximation) but
only with recurrent eigenvalues crowding the stability boundary, so a fixed perturbation ``beta``
breaks wider approximants more. Stable reparameterization: parameterize the recurrent weight
through a map that keeps it stable for every parameter value (e.g. ``lambda = exp(-exp(w))``, the
code's ``lru``; Sec. 4), so perturbing ``w`` never leaves the stable region.

The models here are the linear case of the paper's RNNs (its hidden dynamics with the identity
activation, discretized): a diagonal linear RNN ``h_t = lambda (.) h_{t-1} + u x_t``,
``y_t = c^T h_t`` with kernel ``rho_hat(s) = sum_i c_i u_i lambda_i^s`` (:func:`rnn_kernel`), the
recurrent weight ``lambda`` either the trained parameter itself (``"direct"``, kept in [0, 1) in
training as the code's clamp does) or ``exp(-exp(w))`` (``"exp"``). For white-noise inputs the
mean squared error at time ``T - 1`` is ``sum_{s<T} (rho - rho_hat)(s)^2``; :func:`kernel_error` is
its square root relative to ``||rho||`` (exact, no sampling). :func:`perturbed_error` takes the
worst relative error over perturbations ``w + beta d`` of the recurrent parameter with
``||d||_inf = 1`` (``d`` = all +1, all -1, and random sign vectors; the code draws random directions
and keeps the maximum); for ``"direct"`` the model turns unstable exactly when some
``lambda_i + beta > 1``, so its stability boundary is ``1 - max lambda_i``
(:func:`stability_boundary`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["DiagonalRNN", "kernel_error", "memory_function", "perturbed_error", "rnn_kernel", "stability_boundary",
           "target_kernel", "train_diagonal_rnn"]

PARAMETERIZATIONS = ("direct", "exp")


def target_kernel(kind: str, length: int, dt: float = 1.0) -> Tensor:
    """``rho(s dt) dt`` for ``s = 0..length-1``: ``"exp"`` ``e^{-t}``, ``"pol"`` ``(1 + 0.1 t)^{-1.1}`` (float64)."""
    if length < 1 or not dt > 0:
        raise ConfigError(f"target_kernel: need length >= 1 and dt > 0; got length={length}, dt={dt}")
    t = torch.arange(length, dtype=torch.float64) * dt
    if kind == "exp":
        return torch.exp(-t) * dt
    if kind == "pol":
        return (1 + 0.1 * t) ** -1.1 * dt
    raise ConfigError(f"target_kernel: kind is 'exp' (exponential memory) or 'pol' (polynomial memory); got {kind!r}")


def memory_function(fn: Callable[[Tensor], Tensor], length: int,
                    amplitudes: tuple[float, ...] | list[float] = (1.0, 10.0, 100.0)) -> Tensor:
    """``M(t) = max_x |y_{t+1} - y_t| / (|x| + 1)`` on Heaviside inputs ``x 1[t >= 0]``, ``t = 0..length-2``.

    ``fn`` maps inputs (B, length) to outputs (B, length) causally (one input channel)."""
    if length < 2 or not amplitudes:
        raise ConfigError(f"memory_function: need length >= 2 and at least one amplitude; got {length}, {amplitudes}")
    x = torch.tensor(amplitudes, dtype=torch.float64)
    y = fn(x[:, None] * torch.ones(len(x), length, dtype=torch.float64))
    if y.shape != (len(x), length):
        raise ShapeError(f"memory_function: fn must map (B, L) to (B, L); got {tuple(y.shape)}")
    return ((y[:, 1:] - y[:, :-1]).abs() / (x.abs()[:, None] + 1)).max(0).values


@dataclass(frozen=True)
class DiagonalRNN:
    """``h_t = lambda (.) h_{t-1} + u x_t``, ``y_t = c^T h_t``; ``lambda = w`` (direct) or ``exp(-exp(w))``."""

    w: Tensor
    u: Tensor
    c: Tensor
    parameterization: str = "direct"

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"DiagonalRNN: parameterization is one of {PARAMETERIZATIONS}; got {self.parameterization!r}")
        if not (self.w.shape == self.u.shape == self.c.shape) or self.w.dim() != 1:
            raise ShapeError(f"DiagonalRNN: w, u, c must be (m,); got {tuple(self.w.shape)}, {tuple(self.u.shape)}, "
                             f"{tuple(self.c.shape)}")

    @property
    def lam(self) -> Tensor:
        return self.w if self.parameterization == "direct" else torch.exp(-torch.exp(self.w))

    def __call__(self, x: Tensor) -> Tensor:
        """The recurrence on inputs (B, L) -> outputs (B, L) (reference form)."""
        h = torch.zeros(x.shape[0], self.w.shape[0], dtype=x.dtype)
        ys = []
        for t in range(x.shape[1]):
            h = self.lam * h + self.u * x[:, t, None]
            ys.append(h @ self.c)
        return torch.stack(ys, dim=1)


def rnn_kernel(rnn: DiagonalRNN, length: int) -> Tensor:
    """``rho_hat(s) = sum_i c_i u_i lambda_i^s``, ``s = 0..length-1`` (any real ``lambda``)."""
    s = torch.arange(length, dtype=rnn.w.dtype)
    powers = rnn.lam[None, :] ** s[:, None]
    return powers @ (rnn.c * rnn.u)


def kernel_error(rnn: DiagonalRNN, target: Tensor) -> Tensor:
    """``||rho_hat - rho|| / ||rho||`` over the horizon: the relative RMS output error for white-noise inputs."""
    return (rnn_kernel(rnn, target.shape[0]) - target).norm() / target.norm()


def _directions(m: int, n_random: int, generator: torch.Generator | None) -> Tensor:
    fixed = torch.stack((torch.ones(m, dtype=torch.float64), -torch.ones(m, dtype=torch.float64)))
    if n_random <= 0:
        return fixed
    signs = torch.randint(0, 2, (n_random, m), generator=generator).double() * 2 - 1
    return torch.cat((fixed, signs))


def perturbed_error(rnn: DiagonalRNN, target: Tensor, beta: float, *, n_random: int = 16,
                    generator: torch.Generator | None = None) -> float:
    """``E(beta) = max_d kernel_error`` of the RNN with ``w + beta d``, ``d`` in {+1, -1, ``n_random`` random signs}^m."""
    if beta < 0:
        raise ConfigError(f"perturbed_error: beta is a perturbation size >= 0; got {beta}")
    worst = 0.0
    for d in _directions(rnn.w.shape[0], n_random, generator):
        err = float(kernel_error(replace(rnn, w=rnn.w + beta * d), target))
        worst = max(worst, err if math.isfinite(err) else math.inf)
    return worst


def stability_boundary(rnn: DiagonalRNN) -> float:
    """The largest perturbation of ``w`` (in the inf-norm) that keeps every ``|lambda_i| <= 1``:
    ``1 - max lambda_i`` for ``"direct"`` (``lambda >= 0``), ``inf`` for ``"exp"`` (every ``w`` is stable)."""
    if rnn.parameterization == "exp":
        return math.inf
    return float(1 - rnn.w.max())


def train_diagonal_rnn(target: Tensor, width: int, parameterization: str, *, steps: int = 2000, lr: float = 0.01,
                       lam_range: tuple[float, float] = (0.3, 0.99),
                       generator: torch.Generator | None = None) -> DiagonalRNN:
    """Fit ``rho_hat`` to ``target`` by Adam on ``kernel_error^2`` (full batch, float64, cosine decay).

    Initialization (the same model in both parameterizations): ``lambda_i`` log-spaced in
    ``lam_range`` in ``1 - lambda``, ``u_i = 1``, ``c_i ~ N(0, 1/m)``. ``"direct"`` keeps ``lambda`` in
    [0, 1 - 1e-7] after each step (the code's clamp)."""
    if width < 1 or steps < 0 or not lr > 0 or not 0 < lam_range[0] < lam_range[1] < 1:
        raise ConfigError(f"train_diagonal_rnn: need width >= 1, steps >= 0, lr > 0, 0 < lam_range[0] < lam_range[1] < 1; "
                          f"got {width}, {steps}, {lr}, {lam_range}")
    gap = torch.logspace(math.log10(1 - lam_range[0]), math.log10(1 - lam_range[1]), width, dtype=torch.float64)
    lam0 = 1 - gap
    w = lam0.clone() if parameterization == "direct" else torch.log(-torch.log(lam0))
    u = torch.ones(width, dtype=torch.float64)
    c = torch.randn(width, generator=generator, dtype=torch.float64) / math.sqrt(width)
    params = [w.requires_grad_(True), u.requires_grad_(True), c.requires_grad_(True)]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    for t in range(1, steps + 1):
        loss = kernel_error(DiagonalRNN(w, u, c, parameterization), target) ** 2
        grads = torch.autograd.grad(loss, params)
        step = lr * 0.5 * (1 + math.cos(math.pi * (t - 1) / steps))
        with torch.no_grad():  # Adam written out (torch.optim's first use imports dynamo, ~20 s)
            for p, g, (m1, m2) in zip(params, grads, moments):
                m1.mul_(beta1).add_(g, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(step * (m1 / (1 - beta1 ** t)) / ((m2 / (1 - beta2 ** t)).sqrt() + eps))
            if parameterization == "direct":
                w.clamp_(0.0, 1 - 1e-7)
    return DiagonalRNN(w.detach(), u.detach(), c.detach(), parameterization)
