r"""Saxe et al.'s sigmoidal mode trajectories, measured on a 2-layer linear network.

Paper: Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks", 2013, arXiv:1312.6120, Sec. 2 (Eq. 7-8). With whitened inputs
(``Sigma^{11} = I``) and ``Sigma^{31} = U S V^T``, the strength ``u = a . b`` of each singular mode
of ``y = W^{32} W^{21} x`` under gradient flow ``tau d/dt W = -dL/dW`` follows

    u(t) = s e^{2 s t / tau} / (e^{2 s t / tau} - 1 + s / u0),

a sigmoid from ``u0`` to ``s`` whose rise time scales as ``(tau / s) ln(s / u0)``.

The measurement trains ``DeepLinear`` (depth 2, ``init = "small"``) on ``linear_teacher`` (exactly
whitened training inputs, loss ``(1/2P) sum ||y - yhat||^2``) by full-batch gradient descent at
step ``lr`` (so ``tau = 1 / lr`` steps), in float64, and compares each mode's strength
``u_alpha^T W^{32} W^{21} v_alpha`` every ``every`` steps with the closed form evaluated at the
effective initial strength of ``lens.theory.effective_initial_strength`` (computed from the weights at
step 0, nothing fitted). ``error`` is the largest gap over modes and recorded steps in units of each
mode's target, ``max_{alpha, t} |u_alpha(t) - u_alpha^theory(t)| / s_alpha``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import theory
from ...models.deep_linear import DeepLinear
from ...registry import Paper
from ...tasks.teacher import LinearTeacher
from . import register_measure


def input_correlations(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Sigma^{11} = (1/P) sum x x^T`` and ``Sigma^{31} = (1/P) sum y x^T`` of a training set."""
    p = x.shape[0]
    return x.T @ x / p, y.T @ x / p


def gd_step(w1: torch.Tensor, w2: torch.Tensor, sxx: torch.Tensor, syx: torch.Tensor,
            lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One full-batch gradient-descent step on ``(1/2P) sum ||y - W2 W1 x||^2``, whose gradients are
    ``-W2^T E`` and ``-E W1^T`` with ``E = Sigma^{31} - W2 W1 Sigma^{11}`` (the paper's Eq. 2-3, small
    matrices instead of a pass over the data; tested against autograd)."""
    e = syx - w2 @ w1 @ sxx
    return w1 + lr * w2.T @ e, w2 + lr * e @ w1.T


@register_measure("deep_linear_sigmoid", metric="error",
                  paper=Paper("Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
                              2013, "1312.6120"))
def deep_linear_sigmoid(seed: int, *, in_features: int = 8, out_features: int = 8, width: int = 16,
                        singular_values: tuple[float, ...] | list[float] = (3.0, 2.0, 1.0, 0.5),
                        n_train: int = 64, lr: float = 1e-3, steps: int = 14_000, init_scale: float = 1e-3,
                        every: int = 20) -> dict[str, float]:
    s_list = [float(v) for v in singular_values]
    if not lr > 0 or steps < 1 or every < 1 or not init_scale > 0:
        raise ConfigError(f"deep_linear_sigmoid: need lr > 0, steps >= 1, every >= 1, init_scale > 0; "
                          f"got lr={lr}, steps={steps}, every={every}, init_scale={init_scale}")
    if len(s_list) > width:
        raise ConfigError(f"deep_linear_sigmoid: {len(s_list)} modes need width >= {len(s_list)}, got {width}")
    task = LinearTeacher(in_features=in_features, out_features=out_features, singular_values=tuple(s_list),
                         n_train=n_train, data_seed=seed)
    gen = torch.Generator().manual_seed(seed)
    net = DeepLinear(in_features=in_features, out_features=out_features, width=width, depth=2, init="small",
                     init_scale=init_scale, generator=gen, dtype=torch.float64)
    order = torch.argsort(task.S, descending=True)
    s, U, V = task.S[order], task.U[:, order], task.V[:, order]
    u0 = theory.effective_initial_strength(net.weights[0].detach(), net.weights[1].detach(), U, V)
    batch = task.train_batch(0, gen)  # the whole (whitened) training set
    sxx, syx = input_correlations(batch.inputs, batch.targets)
    w1, w2 = (w.detach().clone() for w in net.weights)
    times, measured = [], []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            times.append(step)
            measured.append(theory.mode_strengths(w2 @ w1, U, V))
        if step < steps:
            w1, w2 = gd_step(w1, w2, sxx, syx, lr)
    u = torch.stack(measured)  # (T, r)
    t = torch.tensor(times, dtype=torch.float64)[:, None]
    predicted = theory.deep_linear_mode(t, s, u0, theory.learning_rate_to_tau(lr))
    gap = (u - predicted).abs() / s
    with torch.no_grad():
        final = float(task.loss(batch.inputs @ (w2 @ w1).T, batch))
    return {"error": float(gap.max()), "mean_error": float(gap.mean()),
            "final_fraction_learned": float((u[-1] / s).min()), "final_loss": final,
            "u0_min": float(u0.min())}
