r"""Learning curves of a high-dimensional linear student against Advani & Saxe's closed form.

Paper: Advani & Saxe, "High-dimensional dynamics of generalization error in neural networks",
2017, arXiv:1710.03667, Sec. 2-3: a linear student ``yhat = w^T x`` learning a noisy linear teacher
``y = wbar^T x + eps`` from ``P = alpha N`` examples (``x_i ~ N(0, 1/N)``, ``wbar_i ~ N(0,
sigma_wbar^2)``, ``eps ~ N(0, sigma_eps^2)``) by gradient descent on ``(1/2) sum_mu (y - yhat)^2``
has, as ``N -> inf``, training and generalization errors given by integrals over the
Marchenko-Pastur spectrum of ``X^T X``:

    E_g(t) = (sigma_wbar^2 + sigma_w0^2) int rho f^2 + sigma_eps^2 int rho (1 - f)^2 / lambda + sigma_eps^2,

with ``f = (1 - eta lambda)^t`` after ``t`` steps (``lens.theory.generalization_error`` and
``training_error``; a point mass ``1 - alpha`` at 0 when ``alpha < 1``).

The measurement draws one finite instance (``N = dim``) per load ``alpha``, runs gradient descent
from ``w = 0`` for ``steps`` steps of size ``eta``, and computes the exact errors of that instance
(``E_g = ||w - wbar||^2 / N + sigma_eps^2``, the expected error on a fresh example, and the training
mean squared error). ``error`` is the largest gap to the closed form over the loads, the recorded
steps and both curves, in units of the common starting error ``E(0) = sigma_wbar^2 + sigma_eps^2``
(the training error of an interpolating student goes to 0, where a relative gap means nothing); at
finite ``N`` it is of order ``1/sqrt(N)``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import theory
from ...registry import Paper
from . import register_measure


def student_curves(x: torch.Tensor, y: torch.Tensor, wbar: torch.Tensor, noise_var: float, eta: float,
                   times: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact generalization and training errors of gradient descent ``w <- w + eta X^T (y - X w)``
    from ``w = 0`` at the given step counts (increasing)."""
    n = x.shape[1]
    w = torch.zeros(n, dtype=x.dtype)
    eg, et = [], []
    step = 0
    for t in times:
        for _ in range(t - step):
            w = w + eta * x.T @ (y - x @ w)
        step = t
        eg.append(float((w - wbar).square().sum() / n + noise_var))
        et.append(float((y - x @ w).square().mean()))
    return torch.tensor(eg, dtype=torch.float64), torch.tensor(et, dtype=torch.float64)


@register_measure("linear_student_curves", metric="error",
                  paper=Paper("High-dimensional dynamics of generalization error in neural networks", 2017,
                              "1710.03667"))
def linear_student_curves(seed: int, *, dim: int = 1000, alphas: tuple[float, ...] | list[float] = (0.5, 2.0),
                          snr: float = 4.0, noise_var: float = 0.25, eta: float = 0.1, steps: int = 500,
                          points: int = 12) -> dict[str, float]:
    if dim < 2 or steps < 1 or points < 1 or not (eta > 0 and snr > 0 and noise_var > 0):
        raise ConfigError(f"linear_student_curves: need dim >= 2, steps >= 1, points >= 1 and eta, snr, noise_var > 0;"
                          f" got dim={dim}, steps={steps}, points={points}, eta={eta}, snr={snr}, noise_var={noise_var}")
    alphas = [float(a) for a in alphas]
    if not alphas or min(alphas) <= 0:
        raise ConfigError(f"linear_student_curves: alphas = P/N must be > 0, got {alphas}")
    for a in alphas:
        edge = (1 + a ** 0.5) ** 2
        if not eta * edge < 2:
            raise ConfigError(f"linear_student_curves: eta = {eta} diverges at alpha = {a} (needs eta < 2 / "
                              f"(1 + sqrt(alpha))^2 = {2 / edge:.3g})")
    gen = torch.Generator().manual_seed(seed)
    times = sorted({round(steps * (k / points) ** 2) for k in range(points + 1)})
    out: dict[str, float] = {}
    worst = 0.0
    for a in alphas:
        p = max(1, round(a * dim))
        x = torch.randn(p, dim, generator=gen, dtype=torch.float64) / dim ** 0.5
        wbar = (snr * noise_var) ** 0.5 * torch.randn(dim, generator=gen, dtype=torch.float64)
        y = x @ wbar + noise_var ** 0.5 * torch.randn(p, generator=gen, dtype=torch.float64)
        eg, et = student_curves(x, y, wbar, noise_var, eta, times)
        t = torch.tensor(times, dtype=torch.float64)
        eg_th = theory.generalization_error(t, p / dim, snr, noise_var=noise_var, eta=eta)
        et_th = theory.training_error(t, p / dim, snr, noise_var=noise_var, eta=eta)
        scale = float(eg_th[0])  # E(0) = sigma_wbar^2 + sigma_eps^2: both curves start there
        gap_g = float((eg - eg_th).abs().max()) / scale
        gap_t = float((et - et_th).abs().max()) / scale
        out[f"gap_gen@{a:g}"], out[f"gap_train@{a:g}"] = gap_g, gap_t
        out[f"final_gen@{a:g}"], out[f"final_gen_theory@{a:g}"] = float(eg[-1]), float(eg_th[-1])
        worst = max(worst, gap_g, gap_t)
    out["error"] = worst
    return out
