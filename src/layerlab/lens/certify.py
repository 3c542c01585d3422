r"""Certified lower bounds on the worst-case margin of a ReLU MLP over an ``l_inf`` ball: interval,
LP (triangle) and a low-rank (Burer–Monteiro) SDP relaxation, against the exact value by MILP.

Paper: Chiu & Zhang, "Tight Certification of Adversarially Trained Neural Networks via Nonconvex
Low-Rank Semidefinite Relaxations", ICML 2023, arXiv:2211.17244. For ``f(x) = W_L h_{L-1} + b_L``,
``h_k = ReLU(W_k h_{k-1} + b_k)``, ``h_0 = x``, a correctly classified input ``x̂`` of label ``y`` and
a target class ``j``, the certification problem is the worst-case margin

    d* = min_x  c^T f(x)   s.t.  ||x - x̂||_inf <= ρ,     c = e_y - e_j,

and the model is certified robust against ``j`` when a lower bound of ``d*`` is positive. The ReLU
``z = ReLU(ŵ)`` is written exactly as ``z >= 0, z >= ŵ, z (z - ŵ) = 0`` and the ball as
``(x_i - l_i)(u_i - x_i) >= 0``. Every constraint is then a product of two affine forms of
``v = (1, x, z)``, ``(a^T v)(b^T v) >= 0`` (or ``= 0``); lifted to ``X = v v^T`` it reads
``<sym(a b^T), X> >= 0``, and dropping ``rank X = 1`` leaves the SDP relaxation (Raghunathan et
al. 2018) the paper restricts:

    min <C, X>  s.t.  <A_i, X> >= 0,  <B_j, X> = 0,  X_00 = 1,  X ⪰ 0.                      (SDP)

The paper's nonconvex relaxation (BM-r) writes ``X = U U^T`` with ``U`` of ``r`` columns (its first
row fixed to ``e_1``, so the first column is ``v`` and the others the "V" of the paper's
``x x^T + V V^T``), and solves it by a local method (Knitro in the paper; here the augmented
Lagrangian of Burer & Monteiro 2003 with L-BFGS inner solves). Its value is certified, as in the
paper, by the dual: with multipliers ``y >= 0`` (inequalities), ``z`` (equalities) and ``t``
(``X_00 = 1``), the slack ``S = C - Σ y_i A_i - Σ z_j B_j - t E_00`` gives for every feasible ``X``

    <C, X> >= t + min(0, λ_min(S)) · T,       T >= tr X on the feasible set,                  (LB)

a rigorous lower bound on the SDP and hence on ``d*``; ``λ_min(S) >= 0`` certifies that the
local BM solution is the SDP's global optimum (the paper's ε_feas = 0). Where ``λ_min(S) < 0`` the
rank is increased along its eigenvector (the Riemannian staircase of the paper's code: start
rank ``ℓ + 1``, at most five more). ``T = 1 + Σ_i max(l_i², u_i²) + Σ_j u_j²`` from the bound
constraints of every variable (the paper's "full" form bounds every neuron; the paper's code
uses ``1 + ||U||²`` of the found solution, a heuristic; ours is a bound). ``t`` is chosen to
maximize (LB) (a concave function of ``t``).

As in the paper's code, neurons whose pre-activation bounds ``[l, u]`` show them inactive on the
ball are removed; stably active ones (``l >= 0``) are eliminated as the affine functions they are
(so the variables are the input and the unstable units). Bounds of the pre-activations come from
interval bound propagation (``lens.lipschitz.preactivation_bounds``) or, tighter, from the
triangle LP layer by layer (the paper's LP baseline, ``get_bound_linf``, LP-ALL of Salman et
al. 2019). Implemented (``sdp_bound``): the paper's SDP with the bound constraints of every
neuron (its ``bm_full_linf``); ``cuts=True`` adds the triangle inequalities to the SDP's first row,
which makes it at least as tight as the LP (the paper's form alone is not comparable in general:
its only linear constraints are ``z >= 0, z >= ŵ``; measured in the tests). ``lp_bound``: the
triangle relaxation ``z <= u (ŵ - l) / (u - l)`` with the same bounds; ``exact_margin``: ``d*``
by a big-M MILP (scipy's HiGHS), checked in the tests against enumeration of activation
patterns. The paper also treats ``l_2`` balls; only ``l_inf`` is implemented. Verified against
the paper's abstract and the authors' released code (BM-r): the constraints, the staircase
and the dual certificate (the full text was not retrievable here). Neither states that the SDP
dominates the LP; the tests find the paper's form below the LP on some networks (not comparable)
and the form with cuts never below it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .lipschitz import preactivation_bounds as interval_preactivation_bounds
from .regions import mlp_weights

__all__ = ["Verification", "SDPResult", "interval_preactivation_bounds", "lp_preactivation_bounds",
           "preactivation_bounds", "problem", "interval_bound", "lp_bound", "sdp_bound", "exact_margin",
           "enumerate_margin", "margin", "certify", "model_certify"]

Bounds = list[tuple[Tensor, Tensor]]


def _layers(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(weights) != len(biases) or len(weights) < 1:
        raise ConfigError(f"need one bias per weight and at least one layer, got {len(weights)} and {len(biases)}")
    out = [(W.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()) for W, b in zip(weights, biases)]
    for k, ((W, b), (W2, _)) in enumerate(zip(out[:-1], out[1:])):
        if W2.shape[1] != W.shape[0] or b.shape != (W.shape[0],):
            raise ShapeError(f"layer {k}: weight {W.shape} / bias {b.shape} do not chain into the next weight {W2.shape}")
    return out


def _objective(weights: Sequence[Tensor], label: int, target: int | None, c: Tensor | None) -> np.ndarray:
    n_out = weights[-1].shape[0]
    if c is not None:
        cv = c.detach().double().cpu().numpy().reshape(-1)
        if cv.shape != (n_out,):
            raise ShapeError(f"objective c has {cv.shape[0]} entries, the network has {n_out} outputs")
        return cv
    if target is None or not (0 <= label < n_out and 0 <= target < n_out) or label == target:
        raise ConfigError(f"margin needs a label and a different target class in [0, {n_out}); got {label}, {target} "
                          f"(or pass the objective vector c)")
    cv = np.zeros(n_out)
    cv[label], cv[target] = 1.0, -1.0
    return cv


@dataclass(frozen=True)
class Verification:
    """The problem ``min c^T f(x)`` on the ball, in the variables ``v = (1, x, z_unstable)``.

    ``pre[k]`` is the ``(n_k, N)`` matrix with ``ŵ_k = pre[k] @ v`` (stable units eliminated),
    ``unstable[k]`` the indices (into layer k) of its unstable units and ``index[k]`` their
    positions in ``v``; ``q @ v`` is the objective; ``lower``/``upper`` the bounds used."""

    center: np.ndarray
    eps: float
    pre: list[np.ndarray]
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    unstable: list[np.ndarray]
    index: list[np.ndarray]
    q: np.ndarray
    n_in: int
    size: int  # N = 1 + n_in + number of unstable units

    @property
    def n_unstable(self) -> int:
        return sum(len(u) for u in self.unstable)

    def hidden_values(self, v: np.ndarray) -> list[np.ndarray]:
        """The post-activations ``h_k`` of every hidden layer at a point ``v`` (rank-one consistent)."""
        out = []
        for P, l, u, un, ix in zip(self.pre, self.lower, self.upper, self.unstable, self.index):
            h = np.where(l >= 0, P @ v, 0.0)
            h[un] = v[ix]
            out.append(h)
        return out


def _prefix(layers: list[tuple[np.ndarray, np.ndarray]], center: np.ndarray, eps: float, bounds: Bounds,
            depth: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """Pre-activation maps of hidden layers ``0..depth-1`` and of layer ``depth`` (the next linear layer),
    as matrices on ``v``; the number of variables ``N``."""
    n_in = layers[0][0].shape[1]
    lows = [np.asarray(l, dtype=np.float64) for l, _ in bounds[:depth]]
    ups = [np.asarray(u, dtype=np.float64) for _, u in bounds[:depth]]
    unstable = [np.flatnonzero((l < 0) & (u > 0)) for l, u in zip(lows, ups)]
    N = 1 + n_in + sum(len(x) for x in unstable)
    H = np.zeros((n_in, N))
    H[:, 1:1 + n_in] = np.eye(n_in)
    pres, index, pos = [], [], 1 + n_in
    for k in range(depth + 1):
        W, b = layers[k]
        P = W @ H
        P[:, 0] += b
        pres.append(P)
        if k == depth:
            break
        l, un = lows[k], unstable[k]
        H = np.where((l >= 0)[:, None], P, 0.0)
        ix = np.arange(pos, pos + len(un))
        H[un] = 0.0
        H[un, ix] = 1.0
        index.append(ix)
        pos += len(un)
    return pres, unstable, index, N


def _check_center(layers: list[tuple[np.ndarray, np.ndarray]], center: Tensor, eps: float) -> np.ndarray:
    if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
        raise ConfigError(f"eps must be a finite number >= 0, got {eps!r}")
    c = center.detach().double().cpu().numpy().reshape(-1)
    if c.shape[0] != layers[0][0].shape[1]:
        raise ShapeError(f"center has {c.shape[0]} features, the first weight takes {layers[0][0].shape[1]}")
    return c


def problem(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float, bounds: Bounds, *,
            label: int = 0, target: int | None = None, c: Tensor | None = None) -> Verification:
    """The verification problem of ``c^T f`` (``c = e_label - e_target`` unless given) on the ball,
    with pre-activation ``bounds`` (one ``(l, u)`` per hidden layer, valid on the ball)."""
    layers = _layers(weights, biases)
    x0 = _check_center(layers, center, eps)
    if len(bounds) != len(layers) - 1:
        raise ShapeError(f"need bounds for {len(layers) - 1} hidden layers, got {len(bounds)}")
    cv = _objective(weights, label, target, c)
    pres, unstable, index, N = _prefix(layers, x0, eps, bounds, len(layers) - 1)
    q = cv @ pres[-1]
    lows = [np.asarray(l, dtype=np.float64) for l, _ in bounds]
    ups = [np.asarray(u, dtype=np.float64) for _, u in bounds]
    return Verification(x0, float(eps), pres[:-1], lows, ups, unstable, index, q, len(x0), N)


# ---- the LP (triangle) relaxation and layer-wise LP bounds ---------------------------------
def _lp_constraints(pres: list[np.ndarray], lows: list[np.ndarray], ups: list[np.ndarray],
                    unstable: list[np.ndarray], index: list[np.ndarray], N: int) -> tuple[np.ndarray, np.ndarray]:
    """``A_ub v[1:] <= b_ub`` of the triangle relaxation: ``ŵ - z <= 0``, ``(u - l) z - u (ŵ - l) <= 0``."""
    rows, rhs = [], []
    for P, l, u, un, ix in zip(pres, lows, ups, unstable, index):
        for j, s in zip(un, ix):
            p = P[j]
            a = p.copy()
            a[s] -= 1.0  # ŵ - z <= 0
            rows.append(a[1:])
            rhs.append(-a[0])
            t = -(u[j] / (u[j] - l[j])) * p  # z - u/(u-l) (ŵ - l) <= 0
            t[0] += u[j] * l[j] / (u[j] - l[j])
            t[s] += 1.0
            rows.append(t[1:])
            rhs.append(-t[0])
    if not rows:
        return np.zeros((0, N - 1)), np.zeros(0)
    return np.array(rows), np.array(rhs)


def _var_bounds(x0: np.ndarray, eps: float, ups: list[np.ndarray], unstable: list[np.ndarray]) -> list[tuple[float, float]]:
    return [(float(a - eps), float(a + eps)) for a in x0] + [(0.0, float(u[j])) for u, un in zip(ups, unstable) for j in un]


def _linprog(cost: np.ndarray, A: np.ndarray, b: np.ndarray, bnds: list[tuple[float, float]]) -> float:
    from scipy.optimize import linprog

    res = linprog(cost[1:], A_ub=A if len(A) else None, b_ub=b if len(b) else None, bounds=bnds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"the LP solver failed: {res.message}")
    return float(res.fun + cost[0])


def lp_preactivation_bounds(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float,
                            *, slack: float = 1e-9) -> Bounds:
    """Pre-activation bounds of every hidden layer by the triangle LP over the earlier layers
    (bounds of layer k from the LP with layer 0..k-1's bounds; LP-ALL of Salman et al. 2019, the
    paper's ``get_bound_linf``), intersected with the interval bounds and widened by ``slack``
    (relative; the LP solver's tolerance)."""
    layers = _layers(weights, biases)
    x0 = _check_center(layers, center, eps)
    ibp = interval_preactivation_bounds(weights, biases, center, eps)
    out: Bounds = []
    for k in range(len(layers) - 1):
        pres, unstable, index, N = _prefix(layers, x0, eps, out, k)
        A, b = _lp_constraints(pres[:-1], [l.numpy() for l, _ in out], [u.numpy() for _, u in out], unstable, index, N)
        bnds = _var_bounds(x0, eps, [u.numpy() for _, u in out], unstable)
        P = pres[-1]
        lo = np.array([_linprog(P[j], A, b, bnds) for j in range(P.shape[0])])
        hi = np.array([-_linprog(-P[j], A, b, bnds) for j in range(P.shape[0])])
        li, ui = ibp[k][0].numpy(), ibp[k][1].numpy()
        lo, hi = np.maximum(lo, li), np.minimum(hi, ui)
        lo, hi = lo - slack * (1 + np.abs(lo)), hi + slack * (1 + np.abs(hi))
        out.append((torch.from_numpy(lo), torch.from_numpy(hi)))
    return out


def preactivation_bounds(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float,
                         method: str = "lp") -> Bounds:
    """``"interval"`` (interval bound propagation, ``lens.lipschitz``) or ``"lp"`` (layer-wise LP)."""
    if method == "interval":
        return interval_preactivation_bounds(weights, biases, center, eps)
    if method == "lp":
        return lp_preactivation_bounds(weights, biases, center, eps)
    raise ConfigError(f"unknown bounds method {method!r}; valid: 'interval', 'lp'")


def interval_bound(prob: Verification) -> float:
    """Lower bound of the margin from the box of the last hidden layer's post-activations."""
    lo = prob.q[0] + sum(min(prob.q[1 + i] * (a - prob.eps), prob.q[1 + i] * (a + prob.eps)) for i, a in enumerate(prob.center))
    for ix, un, u in zip(prob.index, prob.unstable, prob.upper):
        lo += sum(min(0.0, prob.q[s] * u[j]) for j, s in zip(un, ix))
    return float(lo)


def lp_bound(prob: Verification) -> float:
    """The triangle LP relaxation's minimum of the margin (a lower bound of ``d*``)."""
    A, b = _lp_constraints(prob.pre, prob.lower, prob.upper, prob.unstable, prob.index, prob.size)
    return _linprog(prob.q, A, b, _var_bounds(prob.center, prob.eps, prob.upper, prob.unstable))


# ---- the exact value: MILP, and enumeration of activation patterns (reference) --------------
def exact_margin(prob: Verification, *, time_limit: float = 60.0, return_x: bool = False) -> float | tuple[float, Tensor]:
    """``d*`` by the big-M MILP (``z <= ŵ - l (1 - a)``, ``z <= u a``, ``a`` binary; exact given
    valid bounds), solved by HiGHS to a relative gap of 1e-9; with ``return_x`` also the minimizer."""
    from scipy.optimize import LinearConstraint, milp

    n = prob.size - 1
    nb = prob.n_unstable
    rows, lo, hi = [], [], []
    k = 0
    for P, l, u, un, ix in zip(prob.pre, prob.lower, prob.upper, prob.unstable, prob.index):
        for j, s in zip(un, ix):
            p = P[j]
            base = np.zeros(n + nb)
            base[:n] = -p[1:]
            base[s - 1] += 1.0  # z - ŵ' (ŵ = p0 + ŵ')
            rows.append(base.copy()); lo.append(p[0]); hi.append(np.inf)  # z >= ŵ
            r = base.copy(); r[n + k] = -l[j]
            rows.append(r); lo.append(-np.inf); hi.append(p[0] - l[j])  # z <= ŵ - l (1 - a)
            r = np.zeros(n + nb); r[s - 1] = 1.0; r[n + k] = -u[j]
            rows.append(r); lo.append(-np.inf); hi.append(0.0)  # z <= u a
            k += 1
    cost = np.concatenate([prob.q[1:], np.zeros(nb)])
    bnds = _var_bounds(prob.center, prob.eps, prob.upper, prob.unstable) + [(0.0, 1.0)] * nb
    from scipy.optimize import Bounds as SBounds

    lb, ub = np.array([a for a, _ in bnds]), np.array([b for _, b in bnds])
    cons = [LinearConstraint(np.array(rows), lo, hi)] if rows else []
    res = milp(cost, integrality=np.r_[np.zeros(n), np.ones(nb)], bounds=SBounds(lb, ub), constraints=cons,
               options={"mip_rel_gap": 1e-9, "time_limit": time_limit})
    if res.status != 0:
        raise RuntimeError(f"the MILP solver did not reach the optimum: {res.message}")
    if return_x:
        return float(res.fun + prob.q[0]), torch.from_numpy(res.x[:prob.n_in].copy())
    return float(res.fun + prob.q[0])


def enumerate_margin(weights: Sequence[Tensor], biases: Sequence[Tensor], center: Tensor, eps: float, *,
                     label: int = 0, target: int | None = None, c: Tensor | None = None, max_units: int = 14) -> float:
    """``d*`` by enumeration: for every activation pattern of all hidden units (no bounds used) the
    network is affine on the pattern's region; minimize there by LP, keep the smallest (reference
    form, ``2^units`` LPs)."""
    from itertools import product

    from scipy.optimize import linprog

    layers = _layers(weights, biases)
    x0 = _check_center(layers, center, eps)
    cv = _objective(weights, label, target, c)
    units = sum(W.shape[0] for W, _ in layers[:-1])
    if units > max_units:
        raise ConfigError(f"enumerate_margin: {units} hidden units give 2^{units} patterns; at most {max_units}")
    best = math.inf
    n = len(x0)
    for pattern in product((0.0, 1.0), repeat=units):
        A, a0 = np.eye(n), np.zeros(n)  # h = A x + a0
        rows, rhs, k = [], [], 0
        for W, b in layers[:-1]:
            P, p0 = W @ A, W @ a0 + b
            s = np.array(pattern[k:k + W.shape[0]])
            k += W.shape[0]
            # on: ŵ >= 0  <=>  -P x <= p0 ; off: ŵ <= 0  <=>  P x <= -p0
            sign = np.where(s > 0, -1.0, 1.0)
            rows.append(sign[:, None] * P)
            rhs.append(np.where(s > 0, p0, -p0))
            A, a0 = s[:, None] * P, s * p0
        W, b = layers[-1]
        obj, obj0 = cv @ (W @ A), cv @ (W @ a0 + b)
        res = linprog(obj, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=[(a - eps, a + eps) for a in x0],
                      method="highs")
        if res.status == 0:
            best = min(best, float(res.fun + obj0))
    return best


def margin(weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, *, label: int = 0,
           target: int | None = None, c: Tensor | None = None) -> Tensor:
    """``c^T f(x)`` at each row of ``x`` ``(M, in)`` (float64): an upper bound of ``d*`` at points of the ball."""
    layers = _layers(weights, biases)
    cv = torch.from_numpy(_objective(weights, label, target, c))
    h = x.detach().double()
    for W, b in layers[:-1]:
        h = (h @ torch.from_numpy(W).T + torch.from_numpy(b)).clamp_min(0)
    W, b = layers[-1]
    return (h @ torch.from_numpy(W).T + torch.from_numpy(b)) @ cv


# ---- the SDP relaxation by Burer–Monteiro, certified by its dual ----------------------------
def _one_blas_thread():
    """Tiny dense products: BLAS threads only spin (30x slower on a loaded 2-core machine); restored on exit."""
    import scipy.optimize  # noqa: F401  (loads scipy's own BLAS first: the limit covers the libraries loaded now)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class SDPResult:
    """``bound``: certified lower bound (LB); ``primal``: ``<C, U U^T>`` at the local solution (an
    upper estimate of the SDP value, feasible up to ``violation``); ``eig_min``: ``λ_min(S)`` (>= 0:
    the BM solution is the SDP's global optimum); ``rank``: columns of ``U``; ``trace_bound``: ``T``."""

    bound: float
    primal: float
    eig_min: float
    violation: float
    rank: int
    t: float
    trace_bound: float
    iterations: int
    constraints: int
    U: np.ndarray = field(repr=False)


def _sdp_forms(prob: Verification, cuts: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Rows ``a_i``, ``b_i`` of every constraint ``(a_i^T v)(b_i^T v) >= 0`` / ``= 0`` (equalities last:
    the mask ``eq``) and the objective ``q``, in scaled variables ``v = M v'`` (``x = x̂ + ε ξ``,
    ``z = u ζ``: every variable in [-1, 1], which the augmented Lagrangian needs to converge), each
    row scaled to unit norm; the trace bound ``T = 1 + n_in + n_unstable`` of ``X'``; and ``M``."""
    N = prob.size
    e = np.eye(N)
    A, B, eq = [], [], []
    for i, a in enumerate(prob.center):  # (x - l)(u - x) >= 0
        lo, hi = a - prob.eps, a + prob.eps
        A.append(e[1 + i] - lo * e[0]); B.append(hi * e[0] - e[1 + i]); eq.append(False)
    M = np.eye(N)
    M[1:1 + prob.n_in, 0] = prob.center
    M[1:1 + prob.n_in, 1:1 + prob.n_in] *= prob.eps if prob.eps > 0 else 1.0
    for P, l, u, un, ix in zip(prob.pre, prob.lower, prob.upper, prob.unstable, prob.index):
        for j in np.flatnonzero(l >= 0):  # stably active unit: its value ŵ in [l, u]
            if u[j] > l[j]:
                A.append(P[j] - l[j] * e[0]); B.append(u[j] * e[0] - P[j]); eq.append(False)
        for j, s in zip(un, ix):
            p = P[j]
            M[s, s] = u[j]
            A.append(e[s]); B.append(e[0]); eq.append(False)  # z >= 0
            A.append(e[s] - p); B.append(e[0]); eq.append(False)  # z >= ŵ
            A.append(e[s]); B.append(u[j] * e[0] - e[s]); eq.append(False)  # z (u - z) >= 0
            if cuts:  # u (ŵ - l) / (u - l) - z >= 0
                cut = (u[j] / (u[j] - l[j])) * (p - l[j] * e[0]) - e[s]
                A.append(cut); B.append(e[0]); eq.append(False)
            A.append(e[s]); B.append(e[s] - p); eq.append(True)  # z (z - ŵ) = 0
    order = np.argsort(np.array(eq), kind="stable")
    A, B = np.array(A)[order] @ M, np.array(B)[order] @ M
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return A, B, np.array(eq)[order], M.T @ prob.q, float(1 + prob.n_in + prob.n_unstable), M


def _slack(q: np.ndarray, A: np.ndarray, B: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``S = sym(q e_0^T) - Σ λ_i sym(a_i b_i^T)`` (without the ``- t E_00``)."""
    S = -(A.T * lam) @ B
    S[:, 0] += q
    return (S + S.T) / 2


def _dual_bound(S0: np.ndarray, T: float, t0: float) -> tuple[float, float, float]:
    """max over t of ``t + T min(0, λ_min(S0 - t E00))`` (concave in t): (bound, t, λ_min)."""
    from scipy.optimize import minimize_scalar

    def lam(t: float) -> float:
        S = S0.copy()
        S[0, 0] -= t
        return float(np.linalg.eigvalsh(S)[0])

    def neg(t: float) -> float:
        return -(t + T * min(0.0, lam(t)))

    width = 1.0 + abs(t0)
    res = minimize_scalar(neg, bounds=(t0 - width, t0 + width), method="bounded", options={"xatol": 1e-13 * width})
    t = float(res.x) if res.fun < neg(t0) else t0
    lmin = lam(t)
    # eigvalsh is backward stable: the computed λ_min is within ~N eps ||S|| of the true one
    rounding = S0.shape[0] * np.finfo(float).eps * (float(np.linalg.norm(S0)) + abs(t))
    return t + T * min(0.0, lmin - rounding), t, lmin


def _augmented_lagrangian(q: np.ndarray, A: np.ndarray, B: np.ndarray, eq: np.ndarray, T: float, U0: np.ndarray,
                          lam: np.ndarray, *, sigma: float, sigma_max: float, outer: int, inner: int,
                          tol: float) -> tuple[np.ndarray, np.ndarray, float, int, tuple[float, np.ndarray, float]]:
    """Minimize ``q^T U[:, 0]`` s.t. the constraints on ``U U^T`` (row 0 fixed to ``e_1``) by the
    augmented Lagrangian method (L-BFGS inner solves of at most ``inner`` steps, multiplier steps
    ``y <- max(0, y - σ g)``, ``z <- z - σ h``, σ x5 up to ``sigma_max`` when the violation falls by
    less than 4x). Every multiplier estimate gives a valid bound (LB); the best is kept. Returns
    (U, multipliers, max violation, inner iterations, (best bound, its multipliers, its t))."""
    from scipy.optimize import minimize

    N, r = U0.shape
    ineq = ~eq
    iters = 0

    def values(U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        LA, LB = A @ U, B @ U
        return (LA * LB).sum(1), LA, LB

    def violation(g: np.ndarray) -> float:
        return float(max(np.abs(g[eq]).max(initial=0.0), (-g[ineq]).max(initial=0.0)))

    U = U0.copy()
    g, _, _ = values(U)
    viol = violation(g)
    best: tuple[float, np.ndarray, float] = (-math.inf, lam, 0.0)
    for _ in range(outer):
        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            U[1:] = flat.reshape(N - 1, r)
            g, LA, LB = values(U)
            shifted = lam - sigma * g
            pos = np.maximum(0.0, shifted)
            w = -np.where(ineq, pos, shifted)
            val = q @ U[:, 0] + np.where(ineq, (pos**2 - lam**2) / (2 * sigma), -lam * g + sigma / 2 * g * g).sum()
            grad = (A.T * w) @ LB + (B.T * w) @ LA
            grad[:, 0] += q
            return float(val), grad[1:].ravel()

        res = minimize(fun, U[1:].ravel(), jac=True, method="L-BFGS-B",
                       options={"maxiter": inner, "gtol": 1e-10, "ftol": 1e-15, "maxcor": 20})
        iters += int(res.nit)
        U[1:] = res.x.reshape(N - 1, r)
        g, _, _ = values(U)
        lam = np.where(ineq, np.maximum(0.0, lam - sigma * g), lam - sigma * g)
        S0 = _slack(q, A, B, lam)
        bound, t, _ = _dual_bound(S0, T, float((S0 @ U)[0, 0]))
        if bound > best[0]:
            best = (bound, lam.copy(), t)
        new = violation(g)
        if new > 0.25 * viol:
            sigma = min(sigma * 5.0, sigma_max)
        viol = new
        if viol < tol:
            break
    return U, lam, viol, iters, best


def _refine_dual(q: np.ndarray, A: np.ndarray, B: np.ndarray, eq: np.ndarray, T: float, lam: np.ndarray, t: float,
                 mus: Sequence[float], steps: int) -> tuple[np.ndarray, float]:
    """Ascend the dual (LB) from ``(lam, t)``: L-BFGS-B on its smoothing
    ``t + T h_μ(softmin_μ λ(S))`` (``softmin_μ = -μ log Σ exp(-λ_k/μ) <= λ_min``,
    ``h_μ(s) = -μ log(1 + exp(-s/μ)) <= min(0, s)``: a smooth concave lower bound of (LB)), for each μ
    in turn; (LB) itself is evaluated exactly afterwards."""
    from scipy.optimize import minimize

    bounds = [(None, None) if e else (0.0, None) for e in eq] + [(None, None)]

    def neg(z: np.ndarray, mu: float) -> tuple[float, np.ndarray]:
        S = _slack(q, A, B, z[:-1])
        S[0, 0] -= z[-1]
        w, V = np.linalg.eigh(S)
        e = np.exp(-(w - w[0]) / mu)
        soft = w[0] - mu * np.log(e.sum())
        hp = 0.5 * (1.0 - math.tanh(soft / (2 * mu)))  # h'(s) = 1 / (1 + exp(s/μ))
        P = (V * (e / e.sum())) @ V.T  # d softmin / dS
        val = z[-1] - T * mu * np.logaddexp(0.0, -soft / mu)
        grad = np.r_[-T * hp * np.einsum("ij,jk,ik->i", A, P, B), 1.0 - T * hp * P[0, 0]]
        return -float(val), -grad

    z = np.r_[lam, t]
    for mu in mus:
        z = minimize(neg, z, args=(mu,), jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": steps, "gtol": 1e-12, "ftol": 1e-15}).x
    return z[:-1], float(z[-1])


def sdp_bound(prob: Verification, *, rank: int | None = None, max_rank_increase: int = 2, cuts: bool = False,
              outer: int = 8, inner: int = 300, sigma: float = 10.0, sigma_max: float = 1e3, tol: float = 1e-8,
              eig_tol: float = 1e-7, refine: Sequence[float] = (1e-2, 1e-3), refine_steps: int = 150,
              generator: torch.Generator | None = None, start: np.ndarray | None = None) -> SDPResult:
    """Certified lower bound of the margin by the SDP relaxation (see the module docstring), solved
    in rank ``rank`` (default: hidden layers + 2, the paper's ``ℓ + 1``) by the augmented Lagrangian
    of Burer–Monteiro (``outer`` multiplier updates, ``inner`` L-BFGS steps each); while
    ``λ_min(S) < -eig_tol`` and the rank may grow (``max_rank_increase``), a column along the
    eigenvector is added and the solve resumed. The best multipliers are then improved by ascent
    on the smoothed dual (``refine``: the smoothing widths, ``refine_steps`` steps each; ``()`` to
    skip). ``start``: a point ``x`` of the ball to start from (default: the centre)."""
    if (rank is not None and rank < 1) or max_rank_increase < 0 or outer < 1 or inner < 1 or refine_steps < 1:
        raise ConfigError(f"sdp_bound: need rank >= 1, max_rank_increase >= 0, outer, inner, refine_steps >= 1; got "
                          f"{rank}, {max_rank_increase}, {outer}, {inner}, {refine_steps}")
    with _one_blas_thread():
        A, B, eq, q, T, M = _sdp_forms(prob, cuts)
        N = prob.size
        r = rank if rank is not None else len(prob.pre) + 2
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        x = prob.center if start is None else np.asarray(start, dtype=np.float64).reshape(-1)
        # start: the rank-one point of x (its unstable units' values), plus a small random V
        v = np.zeros(N)
        v[0], v[1:1 + prob.n_in] = 1.0, x
        for P, un, ix in zip(prob.pre, prob.unstable, prob.index):
            v[ix] = np.maximum(P[un] @ v, 0.0)
        U = np.zeros((N, r))
        U[:, 0] = np.linalg.solve(M, v)
        U[1:, 1:] = 1e-3 * torch.randn(N - 1, r - 1, generator=g, dtype=torch.float64).numpy()
        lam = np.zeros(len(A))
        iters = 0
        best: tuple[float, np.ndarray, float] = (-math.inf, lam, 0.0)
        for step in range(max_rank_increase + 1):
            U, lam, viol, it, found = _augmented_lagrangian(q, A, B, eq, T, U, lam, sigma=sigma, sigma_max=sigma_max,
                                                             outer=outer, inner=inner, tol=tol)
            iters += it
            best = max(best, found, key=lambda b: b[0])
            S = _slack(q, A, B, lam)
            _, t, lmin = _dual_bound(S, T, float((S @ U)[0, 0]))
            if lmin >= -eig_tol or step == max_rank_increase:
                break
            S[0, 0] -= t
            d = np.linalg.eigh(S)[1][:, 0]
            col = np.zeros((N, 1))
            col[1:, 0] = d[0] * U[1:, 0] + d[1:]  # escape direction (the paper's code: eigvec(1) u + eigvec(2:end))
            U = np.hstack([U, 0.01 * col])
        lam_b, t_b = best[1], best[2]
        if refine:
            lam_b, t_b = _refine_dual(q, A, B, eq, T, lam_b, t_b, refine, refine_steps)
        S = _slack(q, A, B, lam_b)
        bound, t, lmin = _dual_bound(S, T, t_b)
        if bound < best[0]:  # the ascent is on a smoothing: keep the better of the two certificates
            S = _slack(q, A, B, best[1])
            bound, t, lmin = _dual_bound(S, T, best[2])
    return SDPResult(bound=float(bound), primal=float(q @ U[:, 0]), eig_min=float(lmin), violation=float(viol),
                     rank=U.shape[1], t=float(t), trace_bound=float(T), iterations=iters, constraints=len(A), U=M @ U)


# ---- one call ---------------------------------------------------------------------------------
def certify(weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, label: int, eps: float, *,
            targets: Sequence[int] | None = None, methods: Sequence[str] = ("interval", "lp", "sdp", "exact"),
            bounds: str = "lp", cuts: bool = False, generator: torch.Generator | None = None) -> dict[int, dict[str, float]]:
    """Lower bounds of the worst-case margin ``f_label - f_j`` on the ``l_inf`` ball of radius
    ``eps`` around ``x``, for each target ``j`` (default: every other class), by each of
    ``methods`` (``"interval"``, ``"lp"``, ``"sdp"``, ``"exact"``; ``"sdp_eig"`` is added with
    ``"sdp"``). Pre-activation bounds by ``bounds`` (``"lp"`` or ``"interval"``), shared by all."""
    valid = {"interval", "lp", "sdp", "exact"}
    bad = sorted(set(methods) - valid)
    if bad:
        raise ConfigError(f"unknown certification method(s) {bad}; valid: {sorted(valid)}")
    pre = preactivation_bounds(weights, biases, x, eps, bounds)
    n_out = weights[-1].shape[0]
    out: dict[int, dict[str, float]] = {}
    for j in (targets if targets is not None else [k for k in range(n_out) if k != label]):
        prob = problem(weights, biases, x, eps, pre, label=label, target=j)
        row: dict[str, float] = {}
        if "interval" in methods:
            row["interval"] = interval_bound(prob)
        if "lp" in methods:
            row["lp"] = lp_bound(prob)
        if "sdp" in methods:
            res = sdp_bound(prob, cuts=cuts, generator=generator)
            row["sdp"], row["sdp_eig"] = res.bound, res.eig_min
        if "exact" in methods:
            row["exact"] = exact_margin(prob)
        out[j] = row
    return out


def model_certify(model: nn.Module, x: Tensor, label: int, eps: float, **kw) -> dict[int, dict[str, float]]:
    """``certify`` of an ``nn.Sequential(Linear, ReLU, ..., Linear)`` (weights copied in float64)."""
    return certify(*mlp_weights(model), x, label, eps, **kw)
