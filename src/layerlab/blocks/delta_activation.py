r"""Delta activations: transmit only the changes of activations between consecutive time steps.

Paper: Yousefzadeh, Sifalakis, "Training for temporal sparsity in deep neural networks, application
in video processing", 2021, arXiv:2107.07305. Verified from the abstract (search tool): a "Delta
Activation Layer" whose "sole purpose is to promote temporal sparsity of activations during
training"; it "casts temporal sparsity into spatial activation sparsity" (the next layer multiplies
the sparse *changes* of its input) and is trained with delta inference and "the usual" spatial
sparsification heuristics (an L1 penalty on the deltas; the follow-up "Temporal Delta Layer" names
"activation quantization and l1 norm based penalty"). The paper's exact equations could not be read
here; the delta rule below is the standard thresholded delta encoding of delta networks.

Delta encoding of a sequence of activation vectors ``x_t`` (per unit ``j``), with a threshold
``theta >= 0`` and the last transmitted value ``xhat``::

    d_{t,j} = x_{t,j} - xhat_{t-1,j}                       (xhat_{-1} = 0)
    Delta_{t,j} = d_{t,j}  if |d_{t,j}| > theta  else 0     (transmitted update; sparse)
    xhat_{t,j} = xhat_{t-1,j} + Delta_{t,j}                (so |xhat_{t,j} - x_{t,j}| <= theta)

A linear layer fed by the deltas accumulates its output: ``y_t = y_{t-1} + W Delta_t``,
``y_{-1} = b``, which equals ``W xhat_t + b``; at ``theta = 0`` ``xhat_t = x_t`` and the layer is
the dense ``W x_t + b``. The work saved is the fraction of zero ``Delta_{t,j}``: the columns of
``W`` never fetched nor multiplied (``transmitted`` / ``total`` counted on the real tensors).

Training: the threshold is not differentiable; :class:`DeltaActivation` passes gradients straight
through (``xhat`` in the forward, the gradient of ``x`` in the backward) and exposes
:func:`delta_l1`, the mean ``|x_t - x_{t-1}|``, as the sparsity-promoting penalty.

Shape: ``(B, T, N)``, time on dim 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


def _check(x: Tensor, threshold: float) -> None:
    if x.dim() != 3:
        raise ShapeError(f"delta encoding expects (B, T, N) sequences, time on dim 1; got {tuple(x.shape)}")
    if not threshold >= 0:
        raise ConfigError(f"delta threshold must be >= 0 (0: every change is sent, exact), got {threshold}")


def delta_encode(x: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """The transmitted updates ``Delta`` (B, T, N) and the reconstruction ``xhat`` (B, T, N) of ``x``
    by the thresholded delta rule (module docstring), step by step as written there."""
    _check(x, threshold)
    xhat_prev = torch.zeros_like(x[:, 0])
    deltas, xhats = [], []
    for t in range(x.shape[1]):
        d = x[:, t] - xhat_prev
        delta = torch.where(d.abs() > threshold, d, torch.zeros_like(d))
        xhat_prev = xhat_prev + delta
        deltas.append(delta)
        xhats.append(xhat_prev)
    return torch.stack(deltas, 1), torch.stack(xhats, 1)


def delta_l1(x: Tensor) -> Tensor:
    """Sparsity-promoting penalty: mean over batch, time steps t >= 1 and units of ``|x_t - x_{t-1}|``."""
    if x.dim() != 3 or x.shape[1] < 2:
        raise ShapeError(f"delta_l1 expects (B, T, N) with T >= 2; got {tuple(x.shape)}")
    return (x[:, 1:] - x[:, :-1]).abs().mean()


class DeltaActivation(nn.Module):
    """Delta-encodes its input ``(B, T, N)`` at ``threshold`` and returns the reconstruction ``xhat``
    (straight-through gradient); counts ``transmitted`` (nonzero updates) and ``total`` updates since
    :meth:`reset_counts`."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        if not threshold >= 0:
            raise ConfigError(f"DeltaActivation: threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.reset_counts()

    def reset_counts(self) -> None:
        self.transmitted, self.total = 0, 0

    def forward(self, x: Tensor) -> Tensor:
        delta, xhat = delta_encode(x.detach(), self.threshold)
        self.transmitted += int((delta != 0).sum())
        self.total += delta.numel()
        return x + (xhat - x).detach()

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


class DeltaLinear(nn.Module):
    """``Linear(in_features, out_features)`` driven by delta-encoded inputs: ``y_t = y_{t-1} + W Delta_t``,
    ``y_{-1} = b``. ``forward(x, mode)``: ``"accumulate"`` (default) ``W xhat_t + b`` in one product,
    ``"reference"`` the accumulation step by step. Counts transmitted updates like :class:`DeltaActivation`."""

    modes = ("accumulate", "reference")

    def __init__(self, in_features: int, out_features: int, *, threshold: float = 0.0, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.delta = DeltaActivation(threshold)

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold: float) -> "DeltaLinear":
        w = linear.weight
        new = cls(linear.in_features, linear.out_features, threshold=threshold, bias=linear.bias is not None,
                  device=w.device, dtype=w.dtype)
        new.linear.load_state_dict(linear.state_dict())
        return new

    def forward(self, x: Tensor, mode: str = "accumulate") -> Tensor:
        if mode not in self.modes:
            raise ConfigError(f"DeltaLinear has no mode {mode!r}; modes: {', '.join(self.modes)}")
        if mode == "accumulate":
            return self.linear(self.delta(x))
        delta, _ = delta_encode(x, self.delta.threshold)
        self.delta.transmitted += int((delta != 0).sum())
        self.delta.total += delta.numel()
        W, b = self.linear.weight, self.linear.bias
        y = b.expand(x.shape[0], -1) if b is not None else x.new_zeros(x.shape[0], W.shape[0])
        ys = []
        for t in range(x.shape[1]):
            y = y + delta[:, t] @ W.T
            ys.append(y)
        return torch.stack(ys, 1)


def transmitted_fraction(model: nn.Module) -> float:
    """Transmitted updates / all updates over every DeltaActivation of ``model`` since their reset."""
    mods = [m for m in model.modules() if isinstance(m, DeltaActivation)]
    total = sum(m.total for m in mods)
    if total == 0:
        raise ConfigError("transmitted_fraction: no DeltaActivation has seen input; run the model first")
    return sum(m.transmitted for m in mods) / total
