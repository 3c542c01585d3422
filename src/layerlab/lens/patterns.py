r"""PatternNet and PatternAttribution: signal directions ("patterns") of linear neurons, their
signal estimators and the quality criterion ρ.

Paper: Kindermans, Schütt, Alber, Müller, Erhan, Kim & Dähne, "Learning how to explain neural
networks: PatternNet and PatternAttribution", ICLR 2018, arXiv:1705.05598. A neuron ``y = w^T x``
sees data ``x = s + d``: a signal ``s = a_s y`` and a distractor ``d`` with ``w^T d = 0``. Its
weight ``w`` (what the gradient, DeConvNet and Guided BackProp reduce to for a linear model)
filters out the distractor and is in general not aligned with the signal direction ``a_s``.

- Signal estimators ``S(x)`` (the distractor estimate is ``x - S(x)``):
  the filter-based ``S_w(x) = w w^T x / (w^T w)``; the linear ``S_a(x) = a w^T x`` with the pattern

      a = cov[x, y] / (w^T cov[x, y]),

  and the two-component ``S_{a+-}(x) = a_+ w^T x`` if ``w^T x + b > 0`` else ``a_- w^T x``, each
  ``a_±`` the same ratio computed over the data of its regime (``cov_±[x, y] = E_±[x y] -
  E_±[x] E_±[y]``), for ReLU neurons.
- Quality of an estimator, per neuron: ``ρ(S) = 1 - max_v corr(w^T x, v^T (x - S(x)))`` (1: the
  distractor estimate holds nothing of ``y``). The maximum over ``v`` is the least-squares
  regression of ``y`` on ``x - S(x)``; ``signal_quality`` fits ``v`` on one set of inputs and
  measures the correlation on another (the same set gives the in-sample maximum, for which
  ``ρ(S_a) = 1`` holds by construction: ``cov[x - a y, y] = 0``).
- PatternNet back-projects the output's signal through the network with the patterns in place of
  the weights, ``r^{l-1} = A_l^T (r^l ⊙ g_l)``; PatternAttribution with ``W_l ⊙ A_l``, so that for
  a linear model ``y = w^T x`` it gives ``a y`` and ``(w ⊙ a) y``; ``g_l`` are the ReLU gates of the
  forward pass (as in the gradient), ``r^L = e_t z_t`` the selected output's value.

Verified against the abstract and the authors' iNNvestigate implementation of the linear and
two-component patterns (statistics of ``x`` and ``y = w^T x`` without the bias, regimes taken
with the bias; a neuron with zero variance in a regime gets a zero pattern). Exact properties
tested: on ``x = a_s y + a_d ε`` with ``y`` and ``ε`` uncorrelated the pattern equals ``a_s`` and
``ρ(S_w)`` has its closed form; the two-component patterns recover per-regime signal directions;
the backward passes equal autograd's gradients when the patterns are the weights. Float64.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

__all__ = ["fit_patterns", "linear_patterns", "pattern_attribution", "pattern_net", "signal_estimate",
           "signal_quality", "two_component_patterns"]

ESTIMATORS = ("filter", "linear", "two_component")


def _check(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    if not (isinstance(x, Tensor) and x.dim() == 2):
        raise ShapeError(f"inputs must be (N, d), got {getattr(x, 'shape', None)}")
    w = weight.detach().double()
    if w.dim() == 1:
        w = w[None]
    if w.dim() != 2 or w.shape[1] != x.shape[1]:
        raise ShapeError(f"weight must be (k, d) or (d,) with d = {x.shape[1]}, got {tuple(weight.shape)}")
    return x.detach().double(), w


def _ratio(cov: Tensor, w: Tensor) -> Tensor:
    """``cov[:, j] / (w_j^T cov[:, j])`` as rows (k, d); 0 where the denominator is 0."""
    den = (w * cov.T).sum(1)
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where((den == 0)[:, None], torch.zeros_like(cov.T), cov.T / safe[:, None])


def linear_patterns(x: Tensor, weight: Tensor) -> Tensor:
    """Patterns ``a_j = cov[x, y_j] / (w_j^T cov[x, y_j])`` of the neurons ``y = x W^T`` (rows of
    ``weight`` (k, d)), as rows (k, d); inputs ``x`` (N, d)."""
    x, w = _check(x, weight)
    y = x @ w.T
    cov = (x - x.mean(0)).T @ (y - y.mean(0)) / len(x)  # (d, k)
    return _ratio(cov, w)


def two_component_patterns(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(a_+, a_-)`` (each (k, d)): the pattern ratio over the inputs where ``w_j^T x + b_j`` is
    positive, resp. not positive (statistics of ``y = w^T x`` without the bias)."""
    x, w = _check(x, weight)
    y = x @ w.T
    b = torch.zeros(w.shape[0], dtype=x.dtype) if bias is None else bias.detach().double().reshape(-1)
    on = (y + b) > 0  # (N, k)
    out = []
    for mask in (on, ~on):
        m = mask.double()
        count = m.sum(0).clamp_min(1.0)
        ex = (x.T @ m) / count  # (d, k): E_±[x]
        ey = (y * m).sum(0) / count
        exy = (x.T @ (y * m)) / count
        out.append(_ratio(exy - ex * ey, w))
    return out[0], out[1]


def signal_estimate(x: Tensor, weight: Tensor, kind: str, patterns: Tensor | tuple[Tensor, Tensor] | None = None,
                    bias: Tensor | None = None) -> Tensor:
    """``S(x)`` for every neuron: (k, N, d). ``kind``: "filter" (``S_w``), "linear" (``S_a``,
    ``patterns`` (k, d)) or "two_component" (``S_{a+-}``, ``patterns = (a_+, a_-)``, regimes by
    ``w^T x + bias``)."""
    x, w = _check(x, weight)
    y = x @ w.T  # (N, k)
    if kind == "filter":
        direction = (w / w.square().sum(1, keepdim=True).clamp_min(1e-300))[:, None, :]
        return y.T[:, :, None] * direction
    if kind == "linear":
        if not isinstance(patterns, Tensor) or patterns.shape != w.shape:
            raise ShapeError(f"kind 'linear' needs patterns (k, d) = {tuple(w.shape)}")
        return y.T[:, :, None] * patterns.double()[:, None, :]
    if kind == "two_component":
        if not (isinstance(patterns, tuple) and len(patterns) == 2):
            raise ShapeError("kind 'two_component' needs patterns = (a_plus, a_minus)")
        b = torch.zeros(w.shape[0], dtype=x.dtype) if bias is None else bias.detach().double().reshape(-1)
        on = ((y + b) > 0).T[:, :, None]
        a = torch.where(on, patterns[0].double()[:, None, :], patterns[1].double()[:, None, :])
        return y.T[:, :, None] * a
    raise ConfigError(f"unknown estimator kind {kind!r}; valid: {', '.join(ESTIMATORS)}")


def signal_quality(x_fit: Tensor, weight: Tensor, kind: str, patterns: Tensor | tuple[Tensor, Tensor] | None = None,
                   *, bias: Tensor | None = None, x_eval: Tensor | None = None) -> Tensor:
    """``ρ(S) = 1 - corr(y, v^T (x - S(x)))`` per neuron (k,), with ``v`` the least-squares
    regression of ``y = w^T x`` on the distractor estimate over ``x_fit``, and the correlation
    measured on ``x_eval`` (default ``x_fit``: the in-sample ``max_v``), by its absolute value (``v``
    and ``-v`` are both candidates; in-sample it is non-negative anyway). A neuron whose ``y`` or
    distractor estimate does not vary gets ρ = 1 (nothing of ``y`` left to find)."""
    x_fit, w = _check(x_fit, weight)
    x_eval = x_fit if x_eval is None else _check(x_eval, weight)[0]
    d_fit = x_fit[None] - signal_estimate(x_fit, w, kind, patterns, bias)
    d_eval = x_eval[None] - signal_estimate(x_eval, w, kind, patterns, bias)
    y_fit, y_eval = x_fit @ w.T, x_eval @ w.T
    rho = torch.ones(w.shape[0], dtype=torch.float64)
    for j in range(w.shape[0]):
        a = d_fit[j] - d_fit[j].mean(0)
        t = y_fit[:, j] - y_fit[:, j].mean()
        if float(a.abs().max()) == 0.0 or float(t.abs().max()) == 0.0:
            continue
        v = torch.linalg.lstsq(a, t[:, None], driver="gelsd").solution[:, 0]
        p = (d_eval[j] - d_eval[j].mean(0)) @ v
        q = y_eval[:, j] - y_eval[:, j].mean()
        den = float(p.norm() * q.norm())
        if den > 0:  # v and -v are both candidates: a held-out correlation counts by its size
            rho[j] = 1.0 - abs(float(p @ q)) / den
    return rho


# ---- networks: nn.Sequential of Linear and ReLU (Identity, Flatten, Dropout pass through) --------
def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"PatternNet needs an nn.Sequential of Linear and ReLU modules, got {type(model).__name__}")
    mods = [m for m in model if not isinstance(m, (nn.Identity, nn.Flatten, nn.Dropout))]
    if not mods or not isinstance(mods[0], nn.Linear):
        raise ConfigError("PatternNet: the first module must be nn.Linear")
    for m in mods:
        if not isinstance(m, (nn.Linear, nn.ReLU)):
            raise ConfigError(f"PatternNet supports nn.Linear and nn.ReLU, got {type(m).__name__}; use a plain ReLU MLP")
    return mods


def _forward(model: nn.Module, x: Tensor) -> tuple[list[nn.Linear], list[Tensor], list[Tensor | None], Tensor]:
    """(linear layers, their inputs, the ReLU gate after each (None: no ReLU), output), float64."""
    mods = _layers(model)
    linears, inputs, gates = [], [], []
    h = x.detach().double()
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            linears.append(m)
            inputs.append(h)
            h = h @ m.weight.detach().double().T + (0 if m.bias is None else m.bias.detach().double())
            follows = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            gates.append((h > 0).double() if follows else None)
        else:
            h = h.clamp_min(0)
    return linears, inputs, gates, h


def fit_patterns(model: nn.Module, x: Tensor, kind: str = "two_component") -> list[Tensor]:
    """The pattern of every Linear layer of a ReLU MLP from its inputs on data ``x``: "linear" for
    all layers, or "two_component" (``a_+`` for a layer followed by a ReLU: only its positive regime
    passes signal; the linear pattern for the others)."""
    if kind not in ("linear", "two_component"):
        raise ConfigError(f"kind must be 'linear' or 'two_component', got {kind!r}")
    linears, inputs, gates, _ = _forward(model, x)
    out = []
    for m, h, g in zip(linears, inputs, gates):
        if kind == "two_component" and g is not None:
            out.append(two_component_patterns(h, m.weight, m.bias)[0])
        else:
            out.append(linear_patterns(h, m.weight))
    return out


def _backward(model: nn.Module, x: Tensor, target: Tensor, matrices: Sequence[Tensor]) -> Tensor:
    linears, _, gates, z = _forward(model, x)
    if len(matrices) != len(linears):
        raise ShapeError(f"need one pattern per Linear layer ({len(linears)}), got {len(matrices)}")
    t = torch.as_tensor(target).reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(len(z))
    r = torch.zeros_like(z)
    r[torch.arange(len(z)), t] = z[torch.arange(len(z)), t]
    for m, g in zip(reversed(matrices), reversed(gates)):
        if g is not None:
            r = r * g
        r = r @ m.double()
    return r


def pattern_net(model: nn.Module, x: Tensor, target: Tensor | int, patterns: Sequence[Tensor]) -> Tensor:
    """PatternNet: the signal of output ``target`` (per example or one for all) back-projected to
    the input along the ``patterns`` (one (out, in) matrix per Linear layer), (N, d)."""
    return _backward(model, x, torch.as_tensor(target), list(patterns))


def pattern_attribution(model: nn.Module, x: Tensor, target: Tensor | int, patterns: Sequence[Tensor]) -> Tensor:
    """PatternAttribution: the backward pass with ``W ⊙ A`` in place of each weight, (N, d)."""
    linears = [m for m in _layers(model) if isinstance(m, nn.Linear)]
    if len(patterns) != len(linears):
        raise ShapeError(f"need one pattern per Linear layer ({len(linears)}), got {len(patterns)}")
    mats = [m.weight.detach().double() * a.double() for m, a in zip(linears, patterns)]
    return _backward(model, x, torch.as_tensor(target), mats)
