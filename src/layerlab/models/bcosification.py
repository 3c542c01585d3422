r"""B-cosification: turn a trained network into a B-cos network initialised from it, then raise B.

Paper: Arya, Rao, Böhle & Schiele, "B-cosification: Transforming Deep Neural Networks to be
Inherently Interpretable", 2024, arXiv:2411.00715 (after Böhle, Fritz & Schiele, "B-cos Networks:
Alignment is All We Need for Interpretability", 2022, arXiv:2205.10268).

The B-cos transform of one unit with weight ``w`` (and, during the conversion, bias ``b``)::

    f(x; w) = |cos(x, w)|^(B-1) × wᵀx (+ b),      cos(x, w) = wᵀx / (||x|| ||w||)

At ``B = 1`` the factor is 1 and ``f`` *is* the linear layer ``wᵀx + b``: a standard network is the
B = 1 member of the B-cos family, which is the paper's starting point. ``bcosify(model)`` copies
``model`` and swaps every ``nn.Linear`` for a ``BcosifiedLinear`` holding the same weight (and, with
``keep_bias=True``, the same bias) at ``B = 1``, so the converted network computes the original
function exactly; fine-tuning then raises B (``b_schedule``, ``set_B``) so that the alignment
pressure of B > 1 sets in gradually. Biases break dynamic linearity (the paper removes them);
``keep_bias=False`` (the default, the paper's final model) drops them at conversion. Elementwise
ReLUs are kept: ``ReLU(z) = diag(1[z > 0]) z`` is itself dynamic linear, so a bias-free converted
ReLU network is dynamic linear, ``y(x) = W(x) x``, and positively homogeneous.

Input encoding (``encode_input=True``): B-cos networks see ``[x, 1 - x]`` (for inputs in [0, 1]) so
that the input norm carries no colour/intensity bias; the first ``nn.Linear`` (in module order) gets
the weight ``[W, 0]``, which leaves the B = 1 function unchanged while the cosine now uses the norm
of the encoded input.

Deviations: the weights are used *unnormalised* (``wᵀx`` rather than ``ŵᵀx``): the paper's models
follow every B-cos layer with a normalisation layer that makes the weight scale irrelevant; a plain
MLP has none, and unnormalised weights are what makes the B = 1 network equal to the original one.
No MaxOut, no logit bias/temperature. The paper's B schedule in its experiments is a choice among
several (jump to B = 2 or a linear increase); ``b_schedule`` is the linear ramp over ``ramp_steps``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


def _check_B(B: float) -> float:
    if isinstance(B, bool) or not isinstance(B, (int, float)) or not B >= 1 or not math.isfinite(B):
        raise ConfigError(f"B-cosification: B must be a finite number >= 1 (B = 1 is the original linear layer), got {B!r}")
    return float(B)


class BcosifiedLinear(nn.Module):
    r"""``f(x) = |cos(x, w_j)|^(B-1) w_jᵀx (+ b_j)`` per output unit, from an ``nn.Linear``'s weights.

    With ``encode_input`` the layer takes ``x`` of size ``in_features``, forms ``[x, 1 - x]`` and
    applies a weight of width ``2 * in_features`` (initialised ``[W, 0]``). ``eps`` keeps ``||x||`` away
    from 0 (``sqrt(||x||^2 + eps^2)``). Shape ``(..., in) -> (..., out)``.
    """

    def __init__(self, linear: nn.Linear, *, B: float = 1.0, keep_bias: bool = False, encode_input: bool = False,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"BcosifiedLinear is built from an nn.Linear, got {type(linear).__name__}")
        if not eps > 0:
            raise ConfigError(f"BcosifiedLinear: eps must be > 0, got {eps!r}")
        self.B = _check_B(B)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.encode_input, self.eps = bool(encode_input), float(eps)
        w = linear.weight.detach().clone()
        if self.encode_input:
            w = torch.cat([w, torch.zeros_like(w)], dim=1)  # [W, 0]: the B = 1 function is unchanged
        self.weight = nn.Parameter(w)
        if keep_bias and linear.bias is not None:
            self.bias: nn.Parameter | None = nn.Parameter(linear.bias.detach().clone())
        else:
            self.register_parameter("bias", None)

    def encode(self, x: Tensor) -> Tensor:
        """The layer's actual input: ``[x, 1 - x]`` with ``encode_input``, else ``x``."""
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"BcosifiedLinear expects last dim in_features = {self.in_features}, got {tuple(x.shape)}")
        return torch.cat([x, 1 - x], dim=-1) if self.encode_input else x

    def reference(self, x: Tensor) -> Tensor:
        """Unit by unit, as the equation reads: cos, its power, times wᵀx."""
        xe = self.encode(x)
        outs = []
        for j in range(self.out_features):
            w = self.weight[j]
            lin = xe @ w
            cos = lin / (torch.sqrt((xe * xe).sum(-1) + self.eps**2) * torch.linalg.vector_norm(w))
            out = cos.abs().pow(self.B - 1) * lin
            outs.append(out + self.bias[j] if self.bias is not None else out)
        return torch.stack(outs, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        xe = self.encode(x)
        lin = xe @ self.weight.T
        if self.B != 1.0:
            norm_x = torch.sqrt((xe * xe).sum(-1, keepdim=True) + self.eps**2)
            cos = lin / (norm_x * torch.linalg.vector_norm(self.weight, dim=-1))
            lin = lin * cos.abs().pow(self.B - 1)
        return lin + self.bias if self.bias is not None else lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, B={self.B:g}, "
                f"bias={self.bias is not None}, encode_input={self.encode_input}")


def bcosify(model: nn.Module, *, B: float = 1.0, keep_bias: bool = False, encode_input: bool = False) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a ``BcosifiedLinear`` from its weights.

    ``B = 1`` with ``keep_bias=True`` computes exactly ``model``'s function. ``encode_input`` encodes
    the input of the first ``nn.Linear`` in module order (the network's input layer for a
    ``Sequential`` MLP or layerlab's ``Classifier``). The original is left untouched.
    """
    _check_B(B)
    converted = copy.deepcopy(model)
    first = True

    def swap(parent: nn.Module) -> int:
        nonlocal first
        count = 0
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, BcosifiedLinear(child, B=B, keep_bias=keep_bias, encode_input=encode_input and first))
                first = False
                count += 1
            else:
                count += swap(child)
        return count

    if isinstance(converted, nn.Linear):
        return BcosifiedLinear(converted, B=B, keep_bias=keep_bias, encode_input=encode_input)
    if swap(converted) == 0:
        raise ConfigError(f"bcosify: {type(model).__name__} has no nn.Linear layer to convert; "
                          "B-cosification swaps linear layers for B-cos layers")
    return converted


def set_B(model: nn.Module, B: float) -> None:
    """Set B in every ``BcosifiedLinear`` of ``model``."""
    B = _check_B(B)
    layers = [m for m in model.modules() if isinstance(m, BcosifiedLinear)]
    if not layers:
        raise ConfigError("set_B: the model has no BcosifiedLinear layer; convert it with bcosify() first")
    for m in layers:
        m.B = B


def b_schedule(step: int, *, ramp_steps: int, B_start: float = 1.0, B_end: float = 2.0) -> float:
    """B during fine-tuning: linear from ``B_start`` at step 0 to ``B_end`` at ``ramp_steps``, then
    ``B_end`` (``ramp_steps = 0``: ``B_end`` at once)."""
    _check_B(B_start), _check_B(B_end)
    if ramp_steps < 0 or step < 0:
        raise ConfigError(f"b_schedule: step and ramp_steps must be >= 0, got {step}, {ramp_steps}")
    if ramp_steps == 0 or step >= ramp_steps:
        return float(B_end)
    return float(B_start + (B_end - B_start) * step / ramp_steps)


def contributions(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Per-input-dimension contributions ``W(x)ᵀ_c ⊙ x`` of a bias-free converted network's logit ``c``
    (``target``, one class per row), as input × input-gradient; they sum to the logit because the
    network is positively homogeneous of degree 1 (Euler). Shape ``(N, in_features)``."""
    x = x.detach().requires_grad_(True)
    logit = model(x).gather(-1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(logit, x)
    return grad * x.detach()
