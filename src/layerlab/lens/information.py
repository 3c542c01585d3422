r"""The information plane: ``I(X;T)`` and ``I(T;Y)`` of each layer's binned activations.

Papers:
    - Shwartz-Ziv & Tishby, "Opening the Black Box of Deep Neural Networks via Information",
      2017, arXiv:1703.00810 (Sec. 2-3): each hidden layer ``T`` is a Markov chain
      ``Y -> X -> T``; the pair ``(I(X;T), I(T;Y))`` over training is the *information plane*.
      On a finite input set of equiprobable patterns the activations are discretized into bins
      (30 equal bins of the tanh range) and the mutual informations are computed from the empirical
      joint distributions:

          I(X;T) = H(T) - H(T|X) = H(T)   (T a deterministic function of X, each x one pattern),
          I(T;Y) = H(T) + H(Y) - H(T, Y),     H(V) = -Σ_v p(v) log2 p(v)  (bits).

    - Chelombiev, Houghton & O'Donnell, "Adaptive Estimators Show Information Compression in Deep
      Neural Networks", ICLR 2019, arXiv:1902.09037 (Sec. 3): fixed bins are insensitive to
      unbounded activations (ReLU); *adaptive* bins have equal mass: the edges are quantiles of the
      layer's activation values, so each bin holds the same number of values.

A unit's value ``a`` falls in bin ``k`` when ``e_k <= a < e_{k+1}`` for the edges ``e`` (the last bin
closed). A layer's code for one example is the tuple of its units' bins; entropies are plug-in
estimates over the examples (all weighted equally, or by ``weights``).

``mutual_information(a, b)`` is the plug-in MI of two discrete variables given as integer codes;
``entropy`` likewise. ``information_plane(layers, y)`` bins each layer and returns its two
coordinates. The ``information_plane`` probe records them per activation-unit layer on the probe
batch (few examples: ``I(X;T) <= log2 n`` saturates, an honest limit of plug-in estimates).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, unknown_name
from .probes import ProbeContext, ProbeOutput, _is_int, _require, register_probe, scored

METHODS = ("fixed", "adaptive")


def codes(rows: Tensor) -> Tensor:
    """Integer codes ``(N,)`` of the rows of ``rows`` ``(N, ...)``: equal rows, equal codes."""
    if rows.dim() == 1:
        rows = rows[:, None]
    return torch.unique(rows.reshape(rows.shape[0], -1), dim=0, return_inverse=True)[1]


def _weights(n: int, weights: Tensor | None) -> Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = weights.double().reshape(-1)
    if w.shape[0] != n or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ConfigError(f"weights must hold {n} non-negative numbers, not all zero")
    return w / w.sum()


def entropy(c: Tensor, weights: Tensor | None = None) -> float:
    """``H(C)`` in bits of a discrete variable given by integer codes ``(N,)`` (plug-in)."""
    c = codes(c)
    p = torch.zeros(int(c.max()) + 1, dtype=torch.float64).index_add_(0, c, _weights(c.shape[0], weights))
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def mutual_information(a: Tensor, b: Tensor, weights: Tensor | None = None) -> float:
    """``I(A;B) = H(A) + H(B) - H(A,B)`` in bits, plug-in, of paired discrete codes."""
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"a and b must pair up along dim 0, got {a.shape[0]} and {b.shape[0]}")
    ca, cb = codes(a), codes(b)
    return entropy(ca, weights) + entropy(cb, weights) - entropy(torch.stack([ca, cb], 1), weights)


def mi_of_joint(p: Tensor) -> float:
    """``Σ_ab p(a,b) log2 (p(a,b) / (p(a) p(b)))`` of a joint probability table (exact)."""
    p = p.double() / p.sum()
    pa, pb = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    nz = p > 0
    return float((p[nz] * (p[nz] / (pa * pb).expand_as(p)[nz]).log2()).sum())


def bin_edges(t: Tensor, n_bins: int, method: str = "adaptive", value_range: tuple[float, float] | None = None) -> Tensor:
    """``n_bins + 1`` edges for the values of ``t`` (all units of a layer share them): equal width
    over ``value_range`` (default ``[min t, max t]``) for ``"fixed"``; the ``k / n_bins``
    quantiles of the values for ``"adaptive"`` (equal mass; repeated edges merged, so a value
    shared by many entries, such as a ReLU's 0, gets one bin and fewer than ``n_bins`` remain)."""
    if method not in METHODS:
        raise unknown_name("binning method", method, METHODS)
    if not _is_int(n_bins, 1):
        raise ConfigError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    v = t.detach().double().reshape(-1)
    if method == "fixed":
        lo, hi = (float(v.min()), float(v.max())) if value_range is None else map(float, value_range)
        return torch.linspace(lo, hi, n_bins + 1, dtype=torch.float64)
    return quantiles(v, torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)).unique()  # a repeated value
    # (e.g. a ReLU's zeros) fills one bin: equal edges would leave empty bins between them


def quantiles(v: Tensor, q: Tensor) -> Tensor:
    """``torch.quantile(v, q)`` (linear interpolation) of a 1-D float64 tensor, bit for bit.

    The reference sorts all of ``v``; on the CPU this selects only the order statistics it needs
    (NumPy's partial sort around the ranks ``floor`` and ``ceil`` of ``q (n - 1)``; about 2.5x
    faster for the probe's 130k values) and interpolates them with the same ``lerp``. Elsewhere,
    or with NaNs, it is the reference."""
    if v.device.type != "cpu" or bool(torch.isnan(v).any()):
        return torch.quantile(v, q)
    ranks = q * (v.numel() - 1)
    below, above = ranks.floor(), ranks.ceil()
    kth = torch.cat([below, above]).long().unique().numpy()
    selected = torch.from_numpy(np.partition(v.numpy(), kth))
    return torch.lerp(selected[below.long()], selected[above.long()], ranks - below)


def binned(t: Tensor, edges: Tensor) -> Tensor:
    """Bin index of every entry: ``k`` with ``e_k <= a < e_{k+1}`` (values at or beyond the last
    edge in the last bin, below the first in the first)."""
    inner = edges[1:-1].contiguous()
    return torch.bucketize(t.detach().double().contiguous(), inner, right=True)


def information_plane(layers: Mapping[str, Tensor], y: Tensor, *, n_bins: int = 30, method: str = "adaptive",
                      value_range: tuple[float, float] | None = None, x: Tensor | None = None) -> dict[str, tuple[float, float]]:
    """``{layer: (I(X;T), I(T;Y))}`` in bits for activations ``(N, ...)`` of the same ``N``
    examples with labels ``y``. ``x``: codes of the inputs when examples may repeat (default:
    every example is its own pattern, so ``I(X;T) = H(T)``)."""
    out = {}
    for name, t in layers.items():
        if t.shape[0] != y.shape[0]:
            raise ShapeError(f"layer {name!r} has {t.shape[0]} examples, y has {y.shape[0]}")
        c = codes(binned(t, bin_edges(t, n_bins, method, value_range)).reshape(t.shape[0], -1))
        ixt = entropy(c) if x is None else mutual_information(x, c)
        out[name] = (ixt, mutual_information(c, y))
    return out


def _check_plane(options: dict) -> None:
    _require("information_plane", options, "n_bins", lambda v: _is_int(v, 1), "an integer >= 1")
    _require("information_plane", options, "method", lambda v: v in METHODS, f"one of {list(METHODS)}")


def _unit_inputs(model) -> dict[str, str]:
    from .dynamics import threshold_modules

    return {n: "output" for n in threshold_modules(model)}


@register_probe("information_plane", check=_check_plane, captures=_unit_inputs)
def information_plane_probe(ctx: ProbeContext, *, n_bins: int = 30, method: str = "adaptive") -> ProbeOutput:
    """``I(X;T)`` and ``I(T;Y)`` (bits) of each activation unit's output on the probe batch (its
    scored position for token sequences), binned per layer (``method``, ``n_bins``); scalars
    ``ixt.<module>`` and ``ity.<module>``."""
    from .dynamics import capture, threshold_modules

    inputs, targets, position = scored(ctx)
    names = threshold_modules(ctx.model)
    acts = {n: ctx.activations[n] for n in names if n in ctx.activations}
    missing = [n for n in names if n not in acts]
    if missing:
        acts.update(capture(ctx.model, ctx.batch.inputs, missing, kind="output"))
    n = len(inputs)
    layers = {}
    for name, t in acts.items():
        t = t[:n] if t.shape[0] >= n else t
        if position is not None and t.dim() >= 3:
            t = t[torch.arange(n, device=t.device), position]
        layers[name] = t.reshape(n, -1)
    plane = information_plane(layers, targets.cpu(), n_bins=n_bins, method=method)
    scalars = {}
    for name, (ixt, ity) in plane.items():
        scalars[f"ixt.{name}"], scalars[f"ity.{name}"] = ixt, ity
    return ProbeOutput(scalars)
