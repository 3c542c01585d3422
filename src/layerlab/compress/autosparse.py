r"""AutoSparse: learnable-threshold pruning with Gradient Annealing (GA).

Kundu, Mellempudi, Vooturi, Kaul & Dubey, "AUTOSPARSE: Towards Automated Sparse Training of Deep
Neural Networks" (2023, arXiv:2304.06941). Abstract (verified with the search tool): GA is a gradient
driven approach "where gradients of masked weights are scaled down in a non-linear manner"; it
"provides an elegant trade-off between sparsity and accuracy without the need for additional
sparsity-inducing regularization"; combined with learnable-threshold pruning it gives AutoSparse.

Forward (learnable threshold per layer, the soft-threshold form of STR that AutoSparse builds on):

    w~ = sign(w) * h_alpha(|w| - tau(s)),   tau(s) = sigmoid(s),   h_alpha(x) = max(x, 0) in the forward pass,

so a weight is masked (w~ = 0) exactly when |w| <= tau. Backward (GA): dh_alpha/dx = 1 for x > 0 and
alpha for x <= 0, hence

    dL/dw = dL/dw~ * (1 if |w| > tau else alpha),
    dL/ds = -sigmoid(s)(1 - sigmoid(s)) * sum_ij dL/dw~_ij * sign(w_ij) * (1 if |w_ij| > tau else alpha).

alpha = 1 is the straight-through estimator, alpha = 0 the zero gradient (plain STR); GA anneals
alpha_t from alpha_0 to 0 over the first T steps. Schedule here: alpha_t = alpha_0 (1 + cos(pi t / T)) / 2
for t < T, 0 after -- a non-linear decay; the paper's exact schedule (its functional form and alpha_0)
could NOT be verified from the stored sources (only the abstract), so ``annealed_alpha`` is our choice.
Sparsity pressure (ours, not the paper's): s starts at ``s_init`` (tau ~ 0) and a term ``- lam * sum_l s_l``
added to the loss pushes every threshold up against the data loss; ``lam`` sets the final sparsity.

Stored: ``AutoSparseLinear`` keeps the dense ``weight``, the threshold logit ``s`` and ``alpha``;
``export`` returns an ``nn.Linear`` whose weight is w~ (exact zeros: the saving is measured as nonzeros).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper

AUTOSPARSE_2023 = Paper("AUTOSPARSE: Towards Automated Sparse Training of Deep Neural Networks", 2023, "2304.06941")


class _AnnealedRelu(torch.autograd.Function):
    """max(x, 0) forward; gradient 1 where x > 0 and ``alpha`` elsewhere."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.where(x > 0, torch.ones_like(x), torch.full_like(x, ctx.alpha)), None


def sparse_weight(w: Tensor, s: Tensor, alpha: float) -> Tensor:
    """w~ = sign(w) h_alpha(|w| - sigmoid(s)) with the GA backward."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"GA scale alpha must be in [0, 1] (1: straight-through, 0: zero gradient), got {alpha}")
    return torch.sign(w) * _AnnealedRelu.apply(w.abs() - torch.sigmoid(s), alpha)


def annealed_alpha(step: int, total: int, alpha0: float = 1.0) -> float:
    """alpha_t = alpha0 (1 + cos(pi t / T)) / 2 for t < T, 0 afterwards."""
    if total < 1 or not 0.0 <= alpha0 <= 1.0:
        raise ConfigError(f"need anneal steps T >= 1 and alpha0 in [0, 1], got {total}, {alpha0}")
    return 0.0 if step >= total else alpha0 * (1 + math.cos(math.pi * step / total)) / 2


class AutoSparseLinear(nn.Module):
    """A Linear layer whose weight is soft-thresholded by a learnable per-layer threshold sigmoid(s)."""

    def __init__(self, linear: nn.Linear, s_init: float = -8.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.s = nn.Parameter(torch.tensor(float(s_init), dtype=self.weight.dtype))
        self.alpha = 1.0

    def effective_weight(self) -> Tensor:
        return sparse_weight(self.weight, self.s, self.alpha)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def export(self) -> nn.Linear:
        w = self.effective_weight()
        out = nn.Linear(w.shape[1], w.shape[0], bias=self.bias is not None)
        out.weight.copy_(w)
        if self.bias is not None:
            out.bias.copy_(self.bias)
        return out


def autosparse(model: nn.Sequential, *, s_init: float = -8.0) -> nn.Sequential:
    """A copy of ``model`` with every nn.Linear replaced by an ``AutoSparseLinear``."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError("autosparse() takes an nn.Sequential (e.g. relu_mlp)")
    return nn.Sequential(*[AutoSparseLinear(m, s_init) if isinstance(m, nn.Linear) else m for m in model])


def export(model: nn.Sequential) -> nn.Sequential:
    """The trained model with plain nn.Linear layers holding the masked weights w~ (exact zeros)."""
    return nn.Sequential(*[m.export() if isinstance(m, AutoSparseLinear) else m for m in model])


def train_autosparse(model: nn.Sequential, x: Tensor, y: Tensor, *, steps: int, lr: float, seed: int,
                     lam: float, mode: str = "ga", anneal: int | None = None, alpha0: float = 1.0,
                     s_init: float = -4.0, lr_s: float = 1e-2, batch: int = 64) -> nn.Sequential:
    """Train ``autosparse(model)`` with Adam (thresholds at ``lr_s``) on cross-entropy - lam * sum_l s_l; ``mode``: "ga"
    (alpha annealed over ``anneal`` steps, default steps // 2), "ste" (alpha = 1), "zero" (alpha = 0).
    Returns the exported sparse model."""
    if mode not in ("ga", "ste", "zero"):
        raise ConfigError(f"mode must be 'ga', 'ste' or 'zero', got {mode!r}")
    if steps < 1 or not lr > 0 or lam < 0:
        raise ConfigError(f"need steps >= 1, lr > 0, lam >= 0; got {steps}, {lr}, {lam}")
    net = autosparse(model, s_init=s_init)
    layers = [m for m in net if isinstance(m, AutoSparseLinear)]
    thresholds = [m.s for m in layers]
    rest = [p for p in net.parameters() if all(p is not t for t in thresholds)]
    opt = torch.optim.Adam([{"params": rest}, {"params": thresholds, "lr": lr_s}], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    total = anneal if anneal is not None else max(1, steps // 2)
    net.train()
    for t in range(steps):
        alpha = {"ga": annealed_alpha(t, total, alpha0), "ste": 1.0, "zero": 0.0}[mode]
        for m in layers:
            m.alpha = alpha
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx]) - lam * sum(m.s for m in layers)
        loss.backward()
        opt.step()
    return export(net).eval()
