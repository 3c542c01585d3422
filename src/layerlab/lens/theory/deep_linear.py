r"""Closed-form learning dynamics of deep linear networks.

Paper: Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks", 2013, arXiv:1312.6120.

Setting (the paper's notation). A network ``y = W^{32} W^{21} x`` trained by batch gradient descent
on squared error, in the small-step limit, follows

    tau d/dt W^{21} = W^{32 T} (Sigma^{31} - W^{32} W^{21} Sigma^{11}),
    tau d/dt W^{32} = (Sigma^{31} - W^{32} W^{21} Sigma^{11}) W^{21 T},

with ``Sigma^{11}`` the input correlation and ``Sigma^{31} = U S V^T`` the input-output
correlation. For whitened inputs (``Sigma^{11} = I``) and decoupled initial conditions, each
singular mode ``alpha`` has a scalar strength ``u = a . b`` (``a = W^{21} v_alpha``,
``b = W^{32 T} u_alpha``) with ``tau du/dt = 2 u (s - u)``, whose solution from ``u(0) = u0`` is

    u(t) = s e^{2 s t / tau} / (e^{2 s t / tau} - 1 + s / u0),

and the time to go from ``u0`` to ``u_f`` is ``t = (tau / 2 s) ln(u_f (s - u0) / (u0 (s - u_f)))``.

Depth. With ``L`` weight matrices (the paper's ``N_l - 1``) on the balanced submanifold where every
layer carries the same scalar ``a = u^{1/L}`` of the mode, the paper gives
``tau du/dt = L u^{2 - 2/L} (s - u)``. The paper integrates this for ``L = 2`` and discusses
large ``L``; for general integer ``L`` this module integrates it in closed form (our derivation,
not the paper's): with ``x = (u/s)^{1/L}``, ``dt = tau s^{2/L - 2} dx / (x^{L-1} (1 - x^L))``, and
partial fractions over the ``L``-th roots of unity ``w_j`` give

    F_L(x) = x^{2-L} / (2-L) - (1/L) sum_j Re[w_j^2 Log(w_j - x)]      (L >= 3),
    t(u) - t(u0) = tau s^{2/L - 2} (F_L(x) - F_L(x0)).

``L = 2`` reduces to the sigmoid above and ``L = 1`` (plain linear regression) to
``u(t) = s - (s - u0) e^{-t/tau}``. For ``L >= 3`` the trajectory ``u(t)`` is that relation
inverted by bisection in ``zeta = ln(u / (s - u))`` (where ``dt/dzeta`` is bounded below, so the
bracket is explicit), to float64 resolution.

Time units and the 1/P convention (``learning_rate_to_tau``). We measure ``s`` on the
mean-normalized statistics ``Sigma^{31} = (1/P) sum_mu y^mu x^{mu T}`` with inputs whitened as
``(1/P) sum_mu x^mu x^{mu T} = I``. Full-batch gradient descent with step ``eta`` on
``loss = (1/2P) sum_mu ||y^mu - W x^mu||^2`` is then the Euler discretization of the flow above
with ``tau = 1/eta`` and ``t`` counted in steps. The paper's own update ``Delta W = lambda sum_mu
(...)`` (a summed loss) gives ``tau = 1/(lambda P)`` in these units; ``torch``'s ``mse_loss``
(mean over samples *and* outputs, no 1/2) gives ``tau = out_features / (2 eta)``. The flow is
the ``eta -> 0`` limit: gradient descent's relative error in a mode's strength grows like
``eta s ln(s/u0) / 2`` over the plateau.

Random small initialization (``effective_initial_strength``). The closed form assumes decoupled
modes. From small random weights the early dynamics are linear: ``p = a + b`` grows like
``e^{s t / tau}`` and ``a - b`` decays, so ``u -> |p|^2 / 4``; and once a stronger mode is learned
it suppresses the component of a weaker mode's ``p`` along its own hidden direction. The effective
``u0`` therefore is ``|p_perp|^2 / 4``, with ``p_perp`` the part of ``p(0)`` orthogonal to the
``p(0)`` of every stronger mode (Gram-Schmidt in decreasing ``s``). This is an approximation of
ours on top of the paper, computed from the weights at ``t = 0`` only (nothing fitted); measured
against gradient descent it is accurate to a fraction of a percent (see the tests).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError, unknown_name

__all__ = [
    "deep_linear_mode",
    "deep_linear_rise_time",
    "effective_initial_strength",
    "learning_rate_to_tau",
    "mode_strengths",
]

LOSSES = ("half_mean", "half_sum", "mse")

_BISECTION_STEPS = 200


def _broadcast(*values: Tensor | float) -> tuple[list[Tensor], torch.dtype]:
    """float64 tensors on a common device, broadcast together; and the dtype to return in
    (the promoted floating dtype of the tensor inputs, float64 if there are none)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    device = tensors[0].device if tensors else None
    out_dtype = torch.float64
    floats = [v.dtype for v in tensors if v.is_floating_point()]
    if floats:
        out_dtype = floats[0]
        for d in floats[1:]:
            out_dtype = torch.promote_types(out_dtype, d)
    as64 = [torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]
    return list(torch.broadcast_tensors(*as64)), out_dtype


def _check_depth(depth: int) -> int:
    if int(depth) != depth or depth < 1:
        raise ConfigError(f"depth is the number of weight matrices, an integer >= 1; got {depth!r}")
    return int(depth)


def _check_mode(s: Tensor, u0: Tensor, tau: float, depth: int) -> None:
    if not bool((s > 0).all()):
        raise ConfigError("every singular value s must be > 0 (take the SVD of Sigma^{31}; drop zero modes)")
    if not bool((u0 > 0).all()):
        raise ConfigError(
            "every initial strength u0 must be > 0: a mode with u0 <= 0 never rises under the balanced "
            "dynamics; from random weights use effective_initial_strength(...)"
        )
    if depth >= 3 and not bool((u0 < s).all()):
        raise ConfigError(f"depth {depth} closed form needs 0 < u0 < s (a rising mode); got u0 >= s")
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")


def _softplus(z: Tensor) -> Tensor:
    return torch.nn.functional.softplus(z)


def _clock(zeta: Tensor, depth: int) -> Tensor:
    """F_L at x = (u/s)^{1/L} with zeta = ln(u / (s - u)): t(u) = tau s^{2/L-2} F_L + const."""
    L = depth
    if L == 1:
        return _softplus(zeta)  # -ln(1 - u/s)
    if L == 2:
        return 0.5 * zeta
    log_x = -_softplus(-zeta) / L  # ln x = ln(sigmoid(zeta)) / L
    x = torch.exp(log_x)
    one_minus_x = -torch.expm1(log_x)
    value = torch.exp((2 - L) * log_x) / (2 - L) - torch.log(one_minus_x) / L
    j = torch.arange(1, L, dtype=torch.float64, device=zeta.device)
    theta = 2 * math.pi * j / L
    cos, sin = torch.cos(theta), torch.sin(theta)
    xe = x.unsqueeze(-1)
    # |w - x|^2 written as (1-x)^2 + 2x(1 - cos) so it keeps its precision as x -> 1.
    modulus2 = one_minus_x.unsqueeze(-1) ** 2 + 2 * xe * (1 - cos)
    arg = torch.atan2(sin.expand_as(modulus2), cos - xe)
    terms = torch.cos(2 * theta) * 0.5 * torch.log(modulus2) - torch.sin(2 * theta) * arg
    return value - terms.sum(-1) / L


def _logit(u: Tensor, s: Tensor) -> Tensor:
    return torch.log(u) - torch.log(s - u)


def deep_linear_mode(
    t: Tensor | float,
    s: Tensor | float,
    u0: Tensor | float,
    tau: float = 1.0,
    *,
    depth: int = 2,
) -> Tensor:
    r"""Strength ``u(t)`` of one singular mode under gradient flow (Saxe et al. 2013).

    ``depth = 2`` (one hidden layer): ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``, evaluated
    as ``s / (1 + (s/u0 - 1) e^{-2st/tau})`` so that large ``t`` does not overflow. ``depth = L``
    gives the balanced depth-``L`` trajectory ``tau du/dt = L u^{2-2/L} (s - u)`` (see the module
    docstring; ``L >= 3`` needs ``0 < u0 < s``).

    Args:
        t: times, in the units of ``tau`` (steps, with ``tau = learning_rate_to_tau(lr)``).
        s: singular value(s) of the input-output correlation ``Sigma^{31}`` (> 0).
        u0: strength(s) at ``t = 0`` (> 0), e.g. from ``effective_initial_strength``.
        tau: time constant of the flow.
        depth: number of weight matrices ``L`` (the paper's ``N_l - 1``).

    ``t``, ``s`` and ``u0`` broadcast together: for every mode's trajectory pass ``t[:, None]``
    with ``s`` and ``u0`` of shape ``(r,)`` to get ``(T, r)``. Computed in float64; returned in
    the floating dtype of the tensor inputs (float64 if none), on their device.
    """
    depth = _check_depth(depth)
    (t_, s_, u0_), out_dtype = _broadcast(t, s, u0)
    _check_mode(s_, u0_, tau, depth)
    if depth == 1:
        u = s_ - (s_ - u0_) * torch.exp(-t_ / tau)
    elif depth == 2:
        u = s_ / (1 + (s_ / u0_ - 1) * torch.exp(-2 * s_ * t_ / tau))
    else:
        u = _deep_mode(t_, s_, u0_, tau, depth)
    return u.to(out_dtype)


def _deep_mode(t: Tensor, s: Tensor, u0: Tensor, tau: float, depth: int) -> Tensor:
    L = depth
    rate = s ** (2 - 2 / L) / tau  # dF/dt
    zeta0 = _logit(u0, s)
    target = _clock(zeta0, L) + rate * t
    finite = torch.isfinite(t)
    # dF/dzeta = (u/s)^{2/L - 1} / L >= 1/L, so |zeta - zeta0| <= L |F - F0| = L rate |t|.
    width = torch.where(finite, L * rate * t.abs(), torch.zeros_like(t)) + 1.0
    lo, hi = zeta0 - width, zeta0 + width
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = _clock(mid, L) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
        if bool(((hi - lo) <= 4 * torch.finfo(torch.float64).eps * (1 + mid.abs())).all()):
            break
    zeta = 0.5 * (lo + hi)
    u = s * torch.sigmoid(zeta)
    u = torch.where(finite, u, torch.where(t > 0, s, torch.zeros_like(s)))
    return u


def deep_linear_rise_time(
    s: Tensor | float,
    u0: Tensor | float,
    tau: float = 1.0,
    *,
    fraction: float = 0.5,
    u_from: Tensor | float | None = None,
    depth: int = 2,
) -> Tensor:
    r"""Time for a mode to reach ``u = fraction * s`` (``fraction = 0.5``: the half-rise time).

    ``depth = 2``: ``t = (tau / 2s) ln(u_f (s - u_i) / (u_i (s - u_f)))`` with ``u_f = fraction * s``
    and ``u_i = u0`` (the trajectory starts at ``u(0) = u0``), or ``u_i = u_from`` to time the
    passage from ``u_from`` to ``u_f`` instead (e.g. the 10%-to-90% width with ``u_from = 0.1 s``,
    ``fraction = 0.9``). Other depths use the exact balanced clock of the module docstring.

    Returns a tensor of the broadcast shape of ``s``, ``u0`` (and ``u_from``), in the units of
    ``tau``; negative when ``u_from`` lies above ``fraction * s``.
    """
    depth = _check_depth(depth)
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must lie in (0, 1) (the target is fraction * s); got {fraction}")
    start = u0 if u_from is None else u_from
    (s_, u0_, start_), out_dtype = _broadcast(s, u0, start)
    _check_mode(s_, u0_, tau, depth)
    if not bool(((start_ > 0) & (start_ < s_)).all()):
        raise ConfigError("the starting strength (u0 or u_from) must lie in (0, s) for a rise time")
    u_f = fraction * s_
    zeta_f, zeta_i = _logit(u_f, s_), _logit(start_, s_)
    t = (_clock(zeta_f, depth) - _clock(zeta_i, depth)) * tau / s_ ** (2 - 2 / depth)
    return t.to(out_dtype)


def mode_strengths(product: Tensor, U: Tensor, V: Tensor) -> Tensor:
    r"""Strengths ``u_alpha = u_alpha^T W v_alpha = diag(U^T W V)`` of a network map ``W``.

    Args:
        product: the end-to-end map ``W = W_L ... W_1`` (``DeepLinear.product()``), shape
            ``(..., out, in)``.
        U: left singular vectors of ``Sigma^{31}``, shape ``(out, r)``.
        V: right singular vectors of ``Sigma^{31}``, shape ``(in, r)``.

    Returns ``(..., r)``: the projection of the map onto each teacher mode; it equals the
    paper's ``a^alpha . b^alpha`` for a 2-layer network. Dimensionless like ``s``.
    """
    if product.dim() < 2 or U.dim() != 2 or V.dim() != 2:
        raise ShapeError(
            f"mode_strengths expects product (..., out, in), U (out, r), V (in, r); got "
            f"{tuple(product.shape)}, {tuple(U.shape)}, {tuple(V.shape)}"
        )
    out_f, in_f = product.shape[-2:]
    if U.shape[0] != out_f or V.shape[0] != in_f or U.shape[1] != V.shape[1]:
        raise ShapeError(
            f"shapes disagree: product {tuple(product.shape)} needs U ({out_f}, r) and V ({in_f}, r) with "
            f"the same r; got U {tuple(U.shape)}, V {tuple(V.shape)}"
        )
    U = U.to(device=product.device, dtype=product.dtype)
    V = V.to(device=product.device, dtype=product.dtype)
    return torch.einsum("or,...oi,ir->...r", U, product, V)


def effective_initial_strength(w1: Tensor, w2: Tensor, U: Tensor, V: Tensor) -> Tensor:
    r"""Effective ``u0`` of each mode of a 2-layer network ``W2 W1`` started from small random
    weights, for use with ``deep_linear_mode`` (see the module docstring for the derivation).

    With ``p_alpha = W1 v_alpha + W2^T u_alpha`` (the mode's growing hidden direction in the
    linear early phase), ``u0_alpha = |p_perp_alpha|^2 / 4`` where ``p_perp_alpha`` is
    ``p_alpha`` minus its projection on the span of ``p_gamma`` for the modes ``gamma`` listed
    before ``alpha`` (Gram-Schmidt). The columns of ``U``, ``V`` must therefore be ordered by
    decreasing singular value, as ``torch.linalg.svd`` returns them.

    Args:
        w1: ``(hidden, in)``; w2: ``(out, hidden)``; U: ``(out, r)``; V: ``(in, r)``, with
        ``r <= hidden``.

    Returns ``(r,)`` in float64 (or the weights' dtype if wider), on the weights' device.
    Valid for small initial weights (``u0 << s``) and well-separated singular values.
    """
    if w1.dim() != 2 or w2.dim() != 2 or U.dim() != 2 or V.dim() != 2:
        raise ShapeError("effective_initial_strength expects 2-D w1 (hidden, in), w2 (out, hidden), U, V")
    hidden, in_f = w1.shape
    out_f = w2.shape[0]
    if w2.shape[1] != hidden or U.shape[0] != out_f or V.shape[0] != in_f or U.shape[1] != V.shape[1]:
        raise ShapeError(
            f"shapes disagree: w1 {tuple(w1.shape)}, w2 {tuple(w2.shape)} need U ({out_f}, r), V ({in_f}, r); "
            f"got U {tuple(U.shape)}, V {tuple(V.shape)}"
        )
    if U.shape[1] > hidden:
        raise ShapeError(f"r = {U.shape[1]} modes cannot be decoupled in {hidden} hidden units; pass r <= hidden")
    dtype = torch.promote_types(w1.dtype, torch.float64)
    dev = w1.device
    w1, w2 = w1.detach().to(dtype), w2.detach().to(dtype)
    p = w1 @ V.to(dev, dtype) + w2.T @ U.to(dev, dtype)  # (hidden, r)
    # Orthogonalize in order: the QR of p is Gram-Schmidt, and |R_aa| = |p_perp_a|.
    r = torch.linalg.qr(p, mode="r").R
    return 0.25 * torch.diagonal(r) ** 2


def learning_rate_to_tau(
    lr: float,
    *,
    loss: str = "half_mean",
    n_samples: int | None = None,
    out_features: int | None = None,
) -> float:
    r"""Time constant ``tau`` (in optimizer steps) of full-batch gradient descent with step ``lr``.

    ``s`` is always measured on the mean statistics ``Sigma^{31} = (1/P) sum y x^T`` with inputs
    whitened as ``(1/P) sum x x^T = I``. The loss decides the factor:

    - ``"half_mean"``: ``(1/2P) sum_mu ||y - W x||^2``  ->  ``tau = 1 / lr``;
    - ``"half_sum"``: ``(1/2) sum_mu ||y - W x||^2`` (the paper's ``Delta W = lambda sum_mu ...``)
      ->  ``tau = 1 / (lr P)``, needs ``n_samples = P``;
    - ``"mse"``: ``torch.nn.functional.mse_loss`` default, ``(1/(P out)) sum_mu ||y - W x||^2``
      ->  ``tau = out / (2 lr)``, needs ``out_features``.

    The flow is the small-step limit; see the module docstring for the size of the discrepancy.
    """
    if loss not in LOSSES:
        raise unknown_name("loss convention", loss, LOSSES)
    if not lr > 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    if loss == "half_mean":
        return 1.0 / lr
    if loss == "half_sum":
        if n_samples is None or n_samples < 1:
            raise ConfigError("loss='half_sum' needs n_samples = P >= 1 (the loss sums over the P examples)")
        return 1.0 / (lr * n_samples)
    if out_features is None or out_features < 1:
        raise ConfigError("loss='mse' needs out_features >= 1 (mse_loss also averages over outputs)")
    return out_features / (2.0 * lr)
