r"""Maestro's low-rank ordered decomposition (LoD): PCA on a linear autoencoder, accuracy vs rank on digits.

Paper: Horváth, Laskaridis, Rajput & Wang, "Maestro: Uncovering Low-Rank Structures via Trainable
Decomposition", 2023, arXiv:2308.14929 (abstract: "in special cases LoD recovers the SVD
decomposition and PCA"; "Maestro enables the extraction of lower footprint models that preserve
performance ... the graceful trade-off between accuracy-latency ... without retraining";
SVD-style decompositions "are potentially sub-optimal for non-linear models"). The layer, the
ordered-dropout sampling and the step loss are ``blocks.maestro``.

``maestro_pca_autoencoder``: a linear autoencoder ``x -> U_{:b} V_{:b}^T x`` (``MaestroLinear(d, d,
rank)``, no bias) trained by Adam (cosine decay of ``lr`` to 0) on minibatches of centred Gaussian data whose covariance has
eigenvalues ``decay^0, decay^1, ...`` in a random basis, each step's loss ``lod_loss`` (the full
rank plus one sampled rank ``b``, uniform in ``1..rank``; squared error). ``error`` = the largest,
over ``k = 1..rank``, sine of the largest principal angle between ``span(v_1..v_k)`` and the top-``k``
principal subspace of the training data (``error_u`` the same for ``u``); ``error_plain`` is the
same quantity for the same autoencoder trained on the full rank only (the control: without ordered
dropout only ``k = rank`` is PCA's).

``maestro_digits``: a ReLU MLP ``64 -> width x depth -> 10`` on layerlab's digits. Baseline: the
dense MLP trained by Adam on cross-entropy, then each hidden Linear truncated to its top singular
components (``MaestroLinear.from_linear`` truncated: the SVD truncation). Maestro: the same
initialization decomposed by SVD (the authors' ``decompose_model``) and trained with ``lod_loss``
(full pass + one sampled truncation against the full pass's soft targets + ``lasso`` x hierarchical
group lasso; ``sampler`` "single": one (layer, rank) pair, the paper's, or "independent"), same
steps, learning rate and minibatches. Both are evaluated with every
hidden layer cut to ``ceil(f * rank)`` components for each ``f`` in ``fractions``; the classifier head
stays dense in both (the authors' ``ignore_last_layer``). Reported on the test split: ``acc_svd_f<f>``,
``acc_maestro_f<f>``, ``params_f<f>`` (parameters of the truncated network, counted on the model),
and ``svd_minus_maestro`` at ``card_fraction`` (lower is better for Maestro).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ...blocks.maestro import SAMPLERS, MaestroLinear, lod_loss, maestro_layers, uniform_rank_fraction
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, digits_splits, relu_mlp
from ._fit import one_thread

PAPER = Paper("Maestro: Uncovering Low-Rank Structures via Trainable Decomposition", 2023, "2308.14929")


def sin_largest_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """sin of the largest principal angle between span(a) and span(b) (same number of columns)."""
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    return float(torch.linalg.matrix_norm(qa - qb @ (qb.T @ qa), ord=2))


def _fit_autoencoder(x: torch.Tensor, rank: int, seed: int, steps: int, lr: float, batch: int, ordered: bool) -> MaestroLinear:
    torch.manual_seed(seed)
    m = MaestroLinear(x.shape[1], x.shape[1], rank=rank, bias=False, dtype=x.dtype)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    gen, order = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    mse = nn.functional.mse_loss
    for _ in range(steps):
        xb = x[torch.randint(0, len(x), (batch,), generator=gen)]
        opt.zero_grad()
        loss = lod_loss(m, xb, xb, mse, order, distill=False) if ordered else mse(m(xb), xb)
        loss.backward()
        opt.step()
        sched.step()
    return m


@register_measure("maestro_pca_autoencoder", metric="error", paper=PAPER)
def maestro_pca_autoencoder(seed: int, *, d: int = 12, rank: int = 4, n: int = 4000, decay: float = 0.6,
                            steps: int = 4000, lr: float = 1e-2, batch: int = 128) -> dict[str, float]:
    if not 1 <= rank < d or n < d or steps < 1 or batch < 1 or not lr > 0 or not 0 < decay < 1:
        raise ConfigError(f"maestro_pca_autoencoder: need 1 <= rank < d, n >= d, steps, batch >= 1, lr > 0, "
                          f"0 < decay < 1; got rank {rank}, d {d}, n {n}, steps {steps}, batch {batch}, lr {lr}, decay {decay}")
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    scale = decay ** (torch.arange(d, dtype=torch.float64) / 2)  # variances decay^0, decay^1, ...
    x = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scale @ q.T).float()
    pcs = torch.linalg.eigh((x.T @ x).double() / n).eigenvectors.flip(1)
    with one_thread(), torch.random.fork_rng():
        lod = _fit_autoencoder(x, rank, seed, steps, lr, batch, ordered=True)
        plain = _fit_autoencoder(x, rank, seed, steps, lr, batch, ordered=False)
    out: dict[str, float] = {}
    for name, m in (("", lod), ("_plain", plain)):
        u, v = m.u.detach().double(), m.v.detach().double()
        sv = [sin_largest_angle(v[:, :k], pcs[:, :k]) for k in range(1, rank + 1)]
        su = [sin_largest_angle(u[:, :k], pcs[:, :k]) for k in range(1, rank + 1)]
        out[f"error{name}"] = max(sv)
        out[f"error_u{name}"] = max(su)
        out[f"sin_full{name}"] = sv[-1]
    return out


def _hidden_maestro(net: nn.Sequential) -> nn.Sequential:
    """``net`` with every Linear but the last replaced by its SVD decomposition (a copy)."""
    out = copy.deepcopy(net)
    linears = [i for i, m in enumerate(out) if isinstance(m, nn.Linear)]
    for i in linears[:-1]:
        out[i] = MaestroLinear.from_linear(out[i])
    return out


def _params(model: nn.Module) -> int:
    """Parameters the model computes with: active components of MaestroLinear layers at their
    current truncation, every other parameter in full."""
    total = 0
    for m in model.modules():
        if isinstance(m, MaestroLinear):
            b = m.truncation if m.truncation is not None else m.rank
            total += b * (m.in_features + m.out_features) + (m.bias.numel() if m.bias is not None else 0)
        elif not list(m.children()):
            total += sum(p.numel() for p in m.parameters(recurse=False))
    return total


@register_measure("maestro_digits", metric="svd_minus_maestro", paper=PAPER)
def maestro_digits(seed: int, *, width: int = 128, depth: int = 2, steps: int = 3000, lr: float = 1e-3,
                   batch: int = 64, lasso: float = 1e-6, sampler: str = "single",
                   fractions: tuple[float, ...] | list[float] = (0.0625, 0.125, 0.25, 0.5, 1.0),
                   card_fraction: float = 0.125) -> dict[str, float]:
    fractions = [float(f) for f in fractions]
    if width < 1 or depth < 1 or steps < 1 or batch < 1 or not lr > 0 or lasso < 0:
        raise ConfigError(f"maestro_digits: need width, depth, steps, batch >= 1, lr > 0, lasso >= 0; got "
                          f"{width}, {depth}, {steps}, {batch}, {lr}, {lasso}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"maestro_digits: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if not fractions or not all(0 < f <= 1 for f in fractions) or float(card_fraction) not in fractions:
        raise ConfigError(f"maestro_digits: fractions must be in (0, 1] and include card_fraction; got "
                          f"{fractions}, {card_fraction}")
    data = digits_splits()
    (x, y), (xt, yt) = data["train"], data["test"]
    ce = nn.functional.cross_entropy
    with one_thread(), torch.random.fork_rng():
        torch.manual_seed(seed)
        init = relu_mlp(x.shape[1], width, depth, int(y.max()) + 1)
        dense, maestro = copy.deepcopy(init), _hidden_maestro(init)
        for model, lod in ((dense, False), (maestro, True)):
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            gen, order = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
            model.train()
            for _ in range(steps):
                idx = torch.randint(0, len(x), (batch,), generator=gen)
                opt.zero_grad()
                loss = (lod_loss(model, x[idx], y[idx], ce, order, lasso=lasso, sampler=sampler) if lod
                        else ce(model(x[idx]), y[idx]))
                loss.backward()
                opt.step()
            model.eval()
        svd = _hidden_maestro(dense)
        out: dict[str, float] = {"acc_dense": accuracy(dense, xt, yt), "params_dense": float(_params(dense))}
        for f in fractions:
            for name, model in (("svd", svd), ("maestro", maestro)):
                with uniform_rank_fraction(model, f):
                    out[f"acc_{name}_f{f:g}"] = accuracy(model, xt, yt)
                    out[f"params_f{f:g}"] = float(_params(model))
        out["ranks_maestro"] = float(sum(m.rank for m in maestro_layers(maestro)))
    for f in fractions:
        out[f"gain_f{f:g}"] = out[f"acc_maestro_f{f:g}"] - out[f"acc_svd_f{f:g}"]
    out["svd_minus_maestro"] = -out[f"gain_f{float(card_fraction):g}"]
    return out
