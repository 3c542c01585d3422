"""Layer-adaptive magnitude pruning: per-layer sparsities chosen by dynamic programming on an additive
model of the output distortion.

Xu, Wang, Geng, Lin, Wu, Li & Lin, "Efficient Joint Optimization of Layer-Adaptive Weight Pruning in
Deep Neural Networks" (ICCV 2023, arXiv:2308.10438).

The problem. Pruning layer i (n_i weights) by removing its k_i smallest-magnitude weights changes the
network output Y = f(x) into Y~; the output distortion is delta = E ||Y~ - Y||^2 on a calibration set.
The paper's *additivity* property: for pruning several layers at once,

    delta(k_1, ..., k_L) ~= sum_i delta_i(k_i),      delta_i(k_i): the distortion of pruning layer i alone,

(first-order Taylor expansion of f in the weight perturbations; the cross terms E <J_i dW_i, J_j dW_j>
vanish in expectation for independent zero-mean perturbations). With it, layer-adaptive pruning under
a total budget is the separable problem

    min_{k_1..k_L}  sum_i delta_i(k_i)    subject to   sum_i k_i = K = round(s * N),  0 <= k_i <= n_i,

which a dynamic programme over layers solves: g_i(t) = min_k [ g_{i-1}(t - k) + delta_i(k) ] (state t =
weights pruned so far), linear in the number of layers.

Here. delta_i is *measured* (mean squared change of every output entry on the calibration batch, or
with ``distortion="worst"`` the largest per-example mean, the authors' ``worst_case_curve``) at the
``grid + 1`` counts k = round(j n_i / grid), j = 0..grid, pruning only layer i by magnitude, and is
linearly interpolated between them. The DP is exact for this piecewise-linear model at any integer K:
fixing the segment each layer lies on leaves a linear programme with one equality constraint, whose
vertices have at most one layer strictly inside a segment; so the optimum puts every layer on a
measured grid count except at most one "free" layer, which takes the exact remainder. The DP carries
a flag "free layer used" (g^0, g^1); the free transition min_k [g^0(t - k) + delta_i(k)] over each
linear segment is a sliding-window minimum (van Herk / Gil-Werman, exact). Hence the total sparsity is
met exactly (round(s N) zeros among the prunable weights), and the returned allocation is the optimum
of the modelled sum (tested against brute force). Within a layer, weights are removed by magnitude
(as in the authors' code, ``rank="l1"``). Weights that are already zero (an earlier step of an
iterative schedule) stay pruned: a layer's counts start at its zeros, its smallest entries (the
authors' DP likewise never lowers a layer's earlier amount).

Verified against the abstract (output-distortion objective, additivity, DP, linear time) and the
authors' public code (per-layer curves of the squared output change measured on a calibration set over
a uniform grid of pruning amounts, magnitude pruning inside a layer, DP over weight counts). Their DP
snaps the smallest layer to the nearest grid amount (total met approximately); ours meets it exactly by
interpolation. Not here: their iterative prune/fine-tune schedule and the zero-data (synthetic input)
variant. Returns a copy whose pruned weights are exactly zero (savings measured as nonzeros).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper
from .magnitude import prunable_weights, smallest_mask
from .registry import CompressContext, register_technique

XU_2023 = Paper("Efficient Joint Optimization of Layer-Adaptive Weight Pruning in Deep Neural Networks", 2023,
                "2308.10438")
DISTORTIONS = ("mean", "worst")
Curve = tuple[np.ndarray, np.ndarray]  # (counts k_0 = 0 < ... < k_M = n, distortions at those counts)


# ---- the distortion model -------------------------------------------------------------------
def output_distortion(y_ref: Tensor, y: Tensor, how: str = "mean") -> float:
    """||Y~ - Y||^2 averaged over every entry ("mean"), or the largest per-example mean ("worst")."""
    d = (y.double() - y_ref.double()) ** 2
    if how == "mean":
        return float(d.mean())
    if how == "worst":
        return float(d.reshape(d.shape[0], -1).mean(1).max())
    raise ConfigError(f"distortion must be one of {DISTORTIONS}, got {how!r}")


def grid_counts(n: int, grid: int, start: int = 0) -> np.ndarray:
    """The measured counts of a layer of n weights of which ``start`` are already zero:
    start + round(j (n - start) / grid), j = 0..grid, without repeats."""
    return np.unique(start + np.rint(np.arange(grid + 1) * (n - start) / grid).astype(np.int64))


def interpolate(curve: Curve, k: np.ndarray | int) -> np.ndarray:
    """delta_i(k): the measured distortion, linear between measured counts."""
    counts, values = curve
    return np.interp(np.asarray(k, dtype=np.float64), counts.astype(np.float64), values)


@torch.no_grad()
def _forward(model: nn.Module, inputs: Tensor) -> Tensor:
    return model(inputs)


@torch.no_grad()
def distortion_curves(model: nn.Module, params: dict[str, nn.Parameter], inputs: Tensor, *, grid: int = 20,
                      distortion: str = "mean") -> dict[str, Curve]:
    """For each named tensor of ``model`` (``params``, e.g. ``prunable_weights(model)``): the output
    distortion of removing its k smallest-magnitude entries alone, at k in ``grid_counts`` from its
    current number of zeros (which are its smallest entries) to all. The weights are restored afterwards."""
    was_training = model.training
    model.eval()
    y_ref = _forward(model, inputs)
    curves: dict[str, Curve] = {}
    try:
        for name, p in params.items():
            original = p.detach().clone()
            counts = grid_counts(p.numel(), grid, start=int((original == 0).sum()))
            order = torch.sort(original.abs().reshape(-1), stable=True).indices
            values = []
            for k in counts:
                flat = original.reshape(-1).clone()
                flat[order[:int(k)]] = 0
                p.copy_(flat.reshape(p.shape))
                values.append(output_distortion(y_ref, _forward(model, inputs), distortion))
            p.copy_(original)
            curves[name] = (counts, np.asarray(values, dtype=np.float64))
    finally:
        model.train(was_training)
    return curves


@torch.no_grad()
def joint_distortion(model: nn.Module, counts: dict[str, int], inputs: Tensor, *, distortion: str = "mean") -> float:
    """The distortion of removing ``counts[name]`` smallest-magnitude entries from every named tensor at
    once (on a copy): the left side of the additivity property."""
    pruned = copy.deepcopy(model).eval()
    params = dict(pruned.named_parameters())
    for name, k in counts.items():
        p = params[name]
        p.mul_(smallest_mask(p.abs(), int(k)).to(p.dtype))
    ref = copy.deepcopy(model).eval()
    return output_distortion(_forward(ref, inputs), _forward(pruned, inputs), distortion)


# ---- the allocation ---------------------------------------------------------------------------
def _shift(f: np.ndarray, c: int) -> np.ndarray:
    """out[t] = f[t - c] (inf where t < c)."""
    out = np.full_like(f, np.inf)
    if c < len(f):
        out[c:] = f[:len(f) - c]
    return out


def _window_min(h: np.ndarray, w: int) -> np.ndarray:
    """out[a] = min(h[a : a + w]) for a = 0..len(h) - w (van Herk / Gil-Werman: block prefix and suffix minima)."""
    n = len(h)
    m = -(-n // w) * w
    padded = np.full(m, np.inf)
    padded[:n] = h
    blocks = padded.reshape(-1, w)
    prefix = np.minimum.accumulate(blocks, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    a = np.arange(n - w + 1)
    return np.minimum(suffix[a], prefix[a + w - 1])


def _grid_step(f: np.ndarray, curve: Curve) -> np.ndarray:
    """min_j f(t - c_j) + D_j for every t."""
    counts, values = curve
    out = np.full_like(f, np.inf)
    for c, d in zip(counts, values):
        np.minimum(out, _shift(f, int(c)) + d, out=out)
    return out


def _free_step(f: np.ndarray, curve: Curve) -> np.ndarray:
    """min_{0 <= k <= n} f(t - k) + delta(k) for every t, delta linear between the measured counts:
    on the segment [c_j, c_j+1] with slope b, f(t - k) + D_j + b (k - c_j) = D_j - b c_j + b t +
    (f(u) - b u) with u = t - k in [t - c_j+1, t - c_j]: a window minimum of f(u) - b u."""
    counts, values = curve
    t = np.arange(len(f), dtype=np.float64)
    out = np.full_like(f, np.inf)
    for j in range(len(counts) - 1):
        c0, c1 = int(counts[j]), int(counts[j + 1])
        slope = (values[j + 1] - values[j]) / (c1 - c0)
        h = np.concatenate([np.full(c1 - c0, np.inf), f - slope * t])  # h[v] = f(v - (c1 - c0)) - b (v - (c1 - c0))
        wmin = _window_min(h, c1 - c0 + 1)                             # window a = t - c0 covers u in [t - c1, t - c0]
        cand = np.full_like(f, np.inf)
        if c0 < len(f):
            cand[c0:] = values[j] - slope * c0 + slope * t[c0:] + wmin[:len(f) - c0]
        np.minimum(out, cand, out=out)
    return out


def allocate(curves: Sequence[Curve], total: int) -> list[int]:
    """The counts k_i (sum exactly ``total``) minimising sum_i delta_i(k_i), delta_i the measured
    distortion curve of layer i interpolated linearly between its measured counts. Exact: every layer
    on a measured count but at most one (see the module docstring)."""
    sizes = [int(c[0][-1]) for c in curves]
    floors = [int(c[0][0]) for c in curves]
    if not curves or not sum(floors) <= total <= sum(sizes):
        raise ConfigError(f"cannot prune {total} weights from layers of sizes {sizes} already holding {floors} zeros; "
                          f"need {sum(floors)} <= total <= {sum(sizes)} (a higher level, or start from a denser model)")
    for counts, values in curves:
        if counts[0] < 0 or np.any(np.diff(counts) <= 0) or len(values) != len(counts) or not np.all(np.isfinite(values)):
            raise ConfigError("a distortion curve needs increasing counts from >= 0 and one finite value per count")
    g0 = np.full(total + 1, np.inf)
    g0[0] = 0.0
    g1 = np.full(total + 1, np.inf)
    history = [(g0, g1)]
    for curve in curves:
        g0, g1 = _grid_step(g0, curve), np.minimum(_grid_step(g1, curve), _free_step(g0, curve))
        history.append((g0, g1))
    g0, g1 = history[-1]
    state = 1 if g1[total] < g0[total] else 0
    if not np.isfinite(min(g0[total], g1[total])):
        raise ConfigError(f"no allocation prunes exactly {total} weights")  # unreachable: the free layer fills any gap
    ks = [0] * len(curves)
    t = total
    for i in range(len(curves) - 1, -1, -1):  # recompute each layer's argmin from the stored tables
        prev0, prev1 = history[i]
        counts, values = curves[i]
        best, best_k, best_state = np.inf, 0, state
        for c, d in zip(counts, values):
            if c <= t:
                v = (prev1 if state else prev0)[t - c] + d
                if v < best:
                    best, best_k, best_state = v, int(c), state
        if state == 1:
            k = np.arange(floors[i], min(sizes[i], t) + 1)
            v = prev0[t - k] + interpolate(curves[i], k)
            j = int(np.argmin(v)) if len(k) else 0
            if len(k) and v[j] < best:
                best, best_k, best_state = v[j], int(k[j]), 0
        ks[i], t, state = best_k, t - best_k, best_state
    assert t == 0 and sum(ks) == total
    return ks


# ---- the technique ------------------------------------------------------------------------------
@register_technique("layer_adaptive_dp", paper=XU_2023, level_kind="sparsity", levels=(0.8, 0.9, 0.95))
def layer_adaptive_dp(model: nn.Module, level: float, ctx: CompressContext, *, grid: int = 20,
                      distortion: str = "mean", examples: int = 1024, bias: bool = False,
                      embedding: bool = False) -> nn.Module:
    """Prune round(level * N) of the N prunable weights (``compress.magnitude.prunable_weights``) by
    magnitude inside each layer, with the per-layer counts from ``allocate`` on the output-distortion
    curves measured on the first ``examples`` calibration inputs (``grid + 1`` counts per layer).
    Returns a pruned copy; the allocation is in its attribute ``layer_adaptive_counts``."""
    if not 0.0 <= level <= 1.0:
        raise ConfigError(f"layer_adaptive_dp: level is the fraction of weights removed, in [0, 1]; got {level}")
    if not (isinstance(grid, int) and grid >= 1):
        raise ConfigError(f"layer_adaptive_dp: grid (measured counts per layer - 1) must be an int >= 1, got {grid!r}")
    if distortion not in DISTORTIONS:
        raise ConfigError(f"layer_adaptive_dp: distortion must be one of {DISTORTIONS}, got {distortion!r}")
    if ctx is None or getattr(ctx, "calibration", None) is None:
        raise ConfigError("layer_adaptive_dp measures the output distortion on ctx.calibration; "
                          "pass a CompressContext with a calibration batch of the training split")
    out = copy.deepcopy(model)
    params = prunable_weights(out, bias=bias, embedding=embedding)
    if not params:
        raise ConfigError("layer_adaptive_dp: the model has no prunable weights (nn.Linear / nn.Conv weights)")
    inputs = ctx.calibration.inputs[:examples]
    curves = distortion_curves(out, params, inputs, grid=grid, distortion=distortion)
    total = round(level * sum(p.numel() for p in params.values()))
    ks = allocate([curves[n] for n in params], total)
    with torch.no_grad():
        for p, k in zip(params.values(), ks):
            p.mul_(smallest_mask(p.abs(), k).to(p.dtype))
    out.layer_adaptive_counts = dict(zip(params, ks))
    return out
