"""LEURN: layers of univariate threshold rules whose responses embed the path taken so far."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_last_dim, wide_dtype

LEURN_PAPER = Paper("LEURN: Learning Explainable Univariate Rules with Neural Networks", 2023, "2303.14937")


class _RuleEncoding(torch.autograd.Function):
    """``alpha sgn(tanh(u)) + (1 - alpha) tanh(u)`` forward; ``tanh'(u)`` backward (straight-through
    for the binarized part, as in the authors' code)."""

    @staticmethod
    def forward(ctx, u: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        t = torch.tanh(u)
        ctx.save_for_backward(t)
        hard = torch.where(u > 0, torch.ones_like(t), -torch.ones_like(t))
        return alpha * hard + (1.0 - alpha) * t

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (t,) = ctx.saved_tensors
        return grad * (1.0 - t * t), None


def rule_encoding(u: Tensor, alpha: float) -> Tensor:
    """The rule response ``e = alpha sgn(u) + (1 - alpha) tanh(u)`` of ``u = x + tau``; exact
    gradients for ``alpha = 0``, straight-through (``tanh'``) ones otherwise."""
    if alpha == 0.0:
        return torch.tanh(u)
    return _RuleEncoding.apply(u, alpha)


@register("channel", "leurn", paper=LEURN_PAPER)
class LEURN(nn.Module):
    r"""LEURN: a stack of univariate rule layers and a linear decision on all rule responses.

    Paper: Aytekin, "LEURN: Learning Explainable Univariate Rules with Neural Networks", 2023,
    arXiv:2303.14937; the layer layout, encoding and initialization as in the author's code
    (github.com/CaglarAytekin/LEURN, ``LEURN.forward_from_embeddings``).

    Equation, for the ``F = d_model`` features ``x`` of one position and depth ``D``::

        tau_0 = t                                                 (learned, init 0)
        e_d   = alpha sgn(x + tau_{d-1}) + (1 - alpha) tanh(x + tau_{d-1})      d = 1..D
        tau_d = W_d [e_1, ..., e_d] + b_d                         (W_d: F x dF)
        y     = W_o [e_1, ..., e_D] + b_o                         (W_o: F x DF)

    Layer d checks the univariate rules ``x_i > -tau_{d-1,i}`` (one threshold per feature); the
    thresholds of the next layer are a linear function of the responses so far, so the network
    is a univariate decision tree with soft (``alpha < 1``) or hard (``alpha = 1``) splits. The
    decision is linear in the responses, so ``y = sum_{d,i} W_o[:, (d,i)] e_{d,i} + b_o``
    (``contributions``) splits it exactly over rules and features. With ``alpha = 1`` the output is
    constant on the box that the nearest thresholds around ``x`` cut out (``boundaries``).

    Smoothness ``alpha`` in [0, 1]: 1 behaves like a decision tree (binarized responses,
    straight-through gradients ``tanh'``, as in the author's code), 0 like a plain tanh network
    (exact gradients). Default 0 here, so that autograd gives the true gradient of the module
    (the author's code uses 1; set ``alpha = 1`` for hard rules).

    Shape: ``(..., F) -> (..., F)``, position-wise. Parameters: ``F + sum_d (d F^2 + F) + D F^2 + F``
    (depth 2: ``5 F^2 + 4 F``).

    Initialization (the author's): ``tau_0 = 0``; ``W_d ~ U(-1/(dF), 1/(dF))`` so that, with
    responses in [-1, 1], the thresholds start in (-1, 1); ``W_o ~ U(-1/(DF), 1/(DF))``; biases as
    ``nn.Linear``.

    Options: ``depth`` (D, default 2), ``alpha``, ``dropout`` (on the responses before each linear
    map, as the author's ``Dropout1d``), ``device``, ``dtype``.

    Deviation: the paper's embeddings of categorical features and its tabular preprocessing are
    outside the block (the arena feeds it projected features).
    """

    def __init__(
        self,
        d_model: int,
        *,
        depth: int = 2,
        alpha: float = 0.0,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"leurn: depth (the number of rule layers) must be an integer >= 1, got {depth!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"leurn: alpha (smoothness: 0 = tanh network, 1 = hard rules) must be in [0, 1], "
                              f"got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"leurn: dropout must be in [0, 1), got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.depth, self.alpha = int(d_model), depth, float(alpha)
        F_ = self.d_model
        self.tau0 = nn.Parameter(torch.empty(F_, **factory))
        self.thresholds = nn.ModuleList([nn.Linear((d + 1) * F_, F_, **factory) for d in range(depth - 1)])
        self.decision = nn.Linear(depth * F_, F_, **factory)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.tau0.zero_()
            for lin in [*self.thresholds, self.decision]:
                lin.reset_parameters()  # bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear
                bound = 1.0 / lin.in_features
                lin.weight.uniform_(-bound, bound)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(responses, thresholds)``: ``e = [e_1 .. e_D]`` and the thresholds ``-tau_{d-1}`` they
        checked, each ``(..., D, F)``, in float32 or wider."""
        check_last_dim(self, x)
        z = x.to(wide_dtype(x.dtype))
        tau = self.tau0.to(z.dtype).expand_as(z)
        responses, taus = [], []
        for d in range(self.depth):
            e = rule_encoding(z + tau, self.alpha)
            responses.append(self.dropout(e))
            taus.append(-tau)
            if d + 1 < self.depth:
                lin = self.thresholds[d]
                tau = F.linear(torch.cat(responses, -1), lin.weight.to(z.dtype), lin.bias.to(z.dtype))
        return torch.stack(responses, -2), torch.stack(taus, -2)

    def forward(self, x: Tensor) -> Tensor:
        e, _ = self.encode(x)
        y = F.linear(e.flatten(-2), self.decision.weight.to(e.dtype), self.decision.bias.to(e.dtype))
        return y.to(x.dtype)

    def contributions(self, x: Tensor) -> Tensor:
        """Each rule's share of each output: ``W_o[j, (d, i)] e_{d,i}``, shape ``(..., F_out, D, F)``;
        summed over ``(d, i)`` and added to ``b_o`` it is the output exactly."""
        e, _ = self.encode(x)
        W = self.decision.weight.to(e.dtype).reshape(self.d_model, self.depth, self.d_model)
        return W * e.unsqueeze(-3)

    def boundaries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The box ``(lower, upper)`` around each ``x`` cut out by the nearest thresholds below and
        above each feature (``-inf``/``+inf`` where there is none), each ``(..., F)``. With
        ``alpha = 1`` (and no dropout) every point of the open box gets the same output."""
        _, thr = self.encode(x)
        z = x.to(thr.dtype).unsqueeze(-2)
        inf = torch.full_like(thr, math.inf)
        lower = torch.where(thr < z, thr, -inf).amax(-2)
        upper = torch.where(thr > z, thr, inf).amin(-2)
        return lower, upper

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, depth={self.depth}, alpha={self.alpha}"
