r"""A linear RNN learning to integrate white noise: one outlier eigenvalue of ``W`` carries the memory.

Paper: Bordelon, Cotler, Pehlevan & Zavatone-Veth, "Dynamically Learning to Integrate in Recurrent
Neural Networks", 2025, arXiv:2503.18754 (abstract; Fig. 1: noise ``x`` enters a linear RNN with
recurrent weights ``W`` through a read-in vector ``u``, the output ``y`` is read by ``v`` and
compared with the noise filtered by an exponential; when the initial recurrent weights are small,
learning is described by a low-dimensional system that tracks a single outlier eigenvalue of ``W``).

What was verified against the paper: the setting (linear RNN, read-in ``u``, read-out ``v``, white
noise filtered by an exponential as the target, training by gradient descent from small ``W``)
and the claim (abstract). The paper works in continuous time; this module takes the discrete-time
form of the same model (the catalogue's summary), and the reduced system below is our derivation
in that form, not the paper's equations (which we could not read in full).

Model (discrete time). ``h_t = W h_{t-1} + u x_t``, ``h_0 = 0``, ``y_t = v^T h_t``; the target is
``y*_t = sum_{s <= t} gamma^{t-s} x_s`` (``gamma = 1``: the integrator). With ``x_t`` i.i.d.
``N(0, 1)`` and the loss averaged over the ``T`` positions of a sequence, the expected loss is a
deterministic function of the impulse response ``k_tau = v^T W^tau u``:

    L(W, u, v) = (1/2T) E sum_{t=1}^{T} (y_t - y*_t)^2 = (1/2T) sum_{tau=0}^{T-1} (T - tau) (k_tau - gamma^tau)^2

(``y_t - y*_t = sum_tau (k_tau - gamma^tau) x_{t-tau}``; position ``t`` sees lags ``tau < t``).

Reduction (exact). The gradients ``dL/du = sum_tau c_tau (W^T)^tau v``, ``dL/dv = sum_tau c_tau
W^tau u`` and ``dL/dW = sum_tau c_tau sum_{j<tau} (W^T)^j v u^T (W^T)^{tau-1-j}`` lie in the span
``S`` of ``u`` and ``v`` (and ``S x S`` for ``W``) whenever ``W`` maps ``S`` into itself both ways,
i.e. ``W = Q M Q^T`` with ``Q`` an orthonormal basis of ``S``. So gradient descent (any step size)
from ``W(0) = 0`` stays there: the ``N``-dimensional network follows the ``r = 2`` network
``(M, a = Q^T u, b = Q^T v)`` exactly, and ``W`` has ``N - 2`` eigenvalues exactly 0 and at most two
others, those of ``M``. From a small random ``W(0) = sigma J / sqrt(N)`` the paper's picture is the
perturbation of this: a bulk of radius ~``sigma`` and one real outlier following the reduced system.
In the symmetric case ``u = v = a n``, ``W = lambda n n^T`` (``|n| = 1``) the reduced system is two
ODEs, ``k_tau = a^2 lambda^tau``,

    d lambda/dt = -dL/d lambda = -(1/T) sum_tau (T - tau) e_tau a^2 tau lambda^{tau-1},
    d a/dt = -(1/2) dL/da = -(1/T) sum_tau (T - tau) e_tau a lambda^tau,    e_tau = a^2 lambda^tau - gamma^tau,

whose zero-loss fixed point is ``lambda = gamma``, ``a^2 = 1`` (``symmetric_flow``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["gradient_descent", "impulse_response", "lift", "outlier_and_bulk", "population_loss", "reduce",
           "rnn_outputs", "sequence_loss", "symmetric_flow", "symmetric_loss", "target_outputs"]


def _check(w: Tensor, u: Tensor, v: Tensor) -> int:
    n = u.shape[-1] if u.dim() == 1 else -1
    if w.dim() != 2 or w.shape != (n, n) or v.shape != (n,):
        raise ShapeError(f"need W (N, N), u (N,), v (N,); got {tuple(w.shape)}, {tuple(u.shape)}, {tuple(v.shape)}")
    return n


def _check_horizon(t: int, gamma: float) -> None:
    if int(t) != t or t < 1:
        raise ConfigError(f"T is the sequence length, an integer >= 1; got {t!r}")
    if not 0 < gamma <= 1:
        raise ConfigError(f"gamma is the target filter's decay per step, in (0, 1] (1: integrator); got {gamma!r}")


def rnn_outputs(w: Tensor, u: Tensor, v: Tensor, x: Tensor) -> Tensor:
    """Reference form: ``y_t = v^T h_t``, ``h_t = W h_{t-1} + u x_t``, for ``x: (B, T)``; returns ``(B, T)``."""
    _check(w, u, v)
    if x.dim() != 2:
        raise ShapeError(f"x must be (B, T) sequences of scalar inputs, got shape {tuple(x.shape)}")
    h = torch.zeros(x.shape[0], u.shape[0], dtype=w.dtype)
    ys = []
    for t in range(x.shape[1]):
        h = h @ w.T + x[:, t:t + 1] * u
        ys.append(h @ v)
    return torch.stack(ys, 1)


def target_outputs(x: Tensor, gamma: float = 1.0) -> Tensor:
    """``y*_t = sum_{s <= t} gamma^{t-s} x_s`` for ``x: (B, T)``."""
    out, acc = [], torch.zeros(x.shape[0], dtype=x.dtype)
    for t in range(x.shape[1]):
        acc = gamma * acc + x[:, t]
        out.append(acc)
    return torch.stack(out, 1)


def sequence_loss(w: Tensor, u: Tensor, v: Tensor, x: Tensor, gamma: float = 1.0) -> Tensor:
    """``(1/2T) sum_t (y_t - y*_t)^2`` per sequence of ``x: (B, T)`` (its mean over ``x ~ N(0, I)``
    is ``population_loss``)."""
    return 0.5 * (rnn_outputs(w, u, v, x) - target_outputs(x, gamma)).square().mean(1)


def impulse_response(w: Tensor, u: Tensor, v: Tensor, t: int) -> Tensor:
    """``k_tau = v^T W^tau u`` for ``tau = 0..T-1`` (differentiable)."""
    _check(w, u, v)
    ks, h = [], u
    for _ in range(t):
        ks.append(v @ h)
        h = w @ h
    return torch.stack(ks)


def population_loss(w: Tensor, u: Tensor, v: Tensor, t: int, gamma: float = 1.0) -> Tensor:
    """``L = (1/2T) sum_{tau<T} (T - tau) (v^T W^tau u - gamma^tau)^2`` (module docstring)."""
    _check_horizon(t, gamma)
    tau = torch.arange(t, dtype=w.dtype)
    err = impulse_response(w, u, v, t) - gamma**tau
    return 0.5 * ((t - tau) * err.square()).sum() / t


def reduce(w: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(M, a, b, Q)`` with ``Q`` (N, 2) an orthonormal basis of span{u, v} (Gram-Schmidt: ``u``
    first), ``M = Q^T W Q``, ``a = Q^T u``, ``b = Q^T v``. Exact when ``W = Q M Q^T``."""
    n = _check(w, u, v)
    if n < 2:
        raise ShapeError("reduce needs N >= 2 (u and v span a plane)")
    q1 = u / torch.linalg.vector_norm(u)
    r = v - (q1 @ v) * q1
    if float(torch.linalg.vector_norm(r)) <= 1e-12 * float(torch.linalg.vector_norm(v)):
        raise ConfigError("u and v are parallel: their span is a line; pick v not parallel to u")
    q = torch.stack([q1, r / torch.linalg.vector_norm(r)], 1)
    return q.T @ w @ q, q.T @ u, q.T @ v, q


def lift(m: Tensor, a: Tensor, b: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(Q M Q^T, Q a, Q b)``: the reduced network as an ``N``-dimensional one."""
    return q @ m @ q.T, q @ a, q @ b


def outlier_and_bulk(w: Tensor) -> tuple[complex, float]:
    """The eigenvalue of ``W`` of largest modulus and the largest modulus among the others."""
    ev = torch.linalg.eigvals(w)
    order = torch.argsort(ev.abs(), descending=True)
    top = complex(ev[order[0]])
    return top, float(ev[order[1]].abs()) if ev.numel() > 1 else 0.0


def gradient_descent(w: Tensor, u: Tensor, v: Tensor, *, t: int, gamma: float = 1.0, lr: float = 0.05,
                     steps: int = 1000, record_every: int = 0) -> dict[str, object]:
    """Gradient descent on ``population_loss`` over ``(W, u, v)`` (float64 copies; the inputs are not
    modified). Returns the final ``w, u, v``, the final ``loss``, and with ``record_every > 0`` the
    ``steps`` recorded, ``losses``, the ``outlier`` eigenvalue and the ``bulk`` radius at each."""
    _check(w, u, v)
    _check_horizon(t, gamma)
    if steps < 0 or not lr > 0:
        raise ConfigError(f"gradient_descent needs steps >= 0 and lr > 0; got steps={steps}, lr={lr}")
    params = [p.detach().to(torch.float64).clone().requires_grad_(True) for p in (w, u, v)]
    rec: dict[str, list] = {"steps": [], "losses": [], "outlier": [], "bulk": []}

    def record(step: int, loss: float) -> None:
        top, bulk = outlier_and_bulk(params[0].detach())
        rec["steps"].append(step)
        rec["losses"].append(loss)
        rec["outlier"].append(top)
        rec["bulk"].append(bulk)

    loss = population_loss(*params, t, gamma)
    for step in range(steps + 1):
        if record_every and step % record_every == 0:
            record(step, float(loss.detach()))
        if step == steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        loss = population_loss(*params, t, gamma)
    out: dict[str, object] = {"w": params[0].detach(), "u": params[1].detach(), "v": params[2].detach(),
                              "loss": float(loss.detach())}
    if record_every:
        out.update(rec)
    return out


def symmetric_loss(lam: float | Tensor, a: float | Tensor, t: int, gamma: float = 1.0) -> Tensor:
    """``L(lambda, a) = (1/2T) sum_tau (T - tau) (a^2 lambda^tau - gamma^tau)^2`` (``u = v = a n``,
    ``W = lambda n n^T``)."""
    _check_horizon(t, gamma)
    lam, a = torch.as_tensor(lam, dtype=torch.float64), torch.as_tensor(a, dtype=torch.float64)
    tau = torch.arange(t, dtype=torch.float64)
    e = a**2 * lam**tau - gamma**tau
    return 0.5 * ((t - tau) * e.square()).sum() / t


def symmetric_flow(lam: float, a: float, *, t: int, gamma: float = 1.0, lr: float = 0.05,
                   steps: int = 1000) -> tuple[Tensor, Tensor]:
    """The two reduced ODEs of the symmetric case (module docstring), integrated by Euler steps of
    size ``lr`` (= gradient descent with that step on the full network in this subspace). Returns
    the trajectories ``lambda`` and ``a``, each of ``steps + 1`` values (float64)."""
    _check_horizon(t, gamma)
    tau = torch.arange(t, dtype=torch.float64)
    wts = (t - tau) / t
    lams, as_ = [float(lam)], [float(a)]
    for _ in range(steps):
        powers = lam**tau
        e = a * a * powers - gamma**tau
        lam_prev = torch.where(tau > 0, lam ** (tau - 1).clamp(min=0), torch.zeros_like(tau))
        d_lam = -float((wts * e * a * a * tau * lam_prev).sum())
        d_a = -float((wts * e * a * powers).sum())
        lam, a = lam + lr * d_lam, a + lr * d_a
        if not (math.isfinite(lam) and math.isfinite(a)):
            raise ConfigError(f"symmetric_flow diverged (lambda={lam}, a={a}); use a smaller lr")
        lams.append(lam)
        as_.append(a)
    return torch.tensor(lams, dtype=torch.float64), torch.tensor(as_, dtype=torch.float64)
