r"""Maestro's trainable low-rank layer: ``W = U V^T`` trained with low-rank ordered decomposition (LoD).

Paper: Horváth, Laskaridis, Rajput & Wang, "Maestro: Uncovering Low-Rank Structures via Trainable
Decomposition", 2023 (ICML 2024), arXiv:2308.14929.

A linear map is kept factorized as a sum of rank-one components

    W = U V^T = sum_{i=1}^{r} u_i v_i^T,   U = [u_1 .. u_r] (out x r),  V = [v_1 .. v_r] (in x r),
    y = x V U^T + b,

and trained with *ordered dropout over rank*: at a step a rank ``b`` is sampled and the layer keeps
only its first ``b`` components, ``W_b = U_{:b} V_{:b}^T``. Minimising ``E_b L(W_b)`` pushes the
most important directions into the first components (an importance order). The paper's analysis:
for a linear map on whitened (uniform) data LoD recovers the SVD, and for a linear autoencoder
``x -> U_{:b} V_{:b}^T x`` it recovers PCA, each ``U_{:b} V_{:b}^T`` projecting onto the top-``b``
principal subspace (tested: ``tests/blocks/test_maestro.py``).

The pieces, as in the authors' code (``maestro/layers/linear.py``, ``samplers/single_layer.py``,
``cifar_mnist_main.py``; checked):

- *sampling* (``sample_truncation``): one (layer, rank) pair uniformly among all pairs
  ``{(l, b): 1 <= b <= r_l}`` ("one layer at a time", the sampler of the paper's experiments); the
  other layers stay full. The code's alternative "across layers" sampler, an independent uniform
  rank for every layer, is ``sample_independent`` (``lod_loss(..., sampler="independent")``);
- *the step loss* (``lod_loss``): ``L(full) + L(sampled sub-model, soft targets softmax(full
  output), no gradient through them) + lambda * group lasso``;
- *hierarchical group lasso* (``group_lasso``): ``sum_b ( ||V_{:, b:}||_F + ||U_{:, b:}||_F )``,
  the norm of every tail of components, which penalises later components more;
- *importance* of component ``b``: ``||u_b|| ||v_b||`` (its singular value when the ``u`` are
  orthogonal and the ``v`` are); hierarchical importance uses the tail norms instead;
- *progressive shrinking* (``shrink_``): components whose importance falls below a threshold are
  switched off (``active`` mask); ``prune_`` then drops them from the parameters.

Reference form: ``dense_weight(rank)`` is the dense ``U_{:b} V_{:b}^T`` and ``reference(x, rank)``
the dense Linear with it; ``forward`` multiplies by ``V`` then ``U^T`` (``(in + out) b`` multiply-adds
per row instead of ``in * out``). ``from_linear`` splits a dense layer's SVD as
``U = U_svd sqrt(S)``, ``V = V_svd sqrt(S)`` (the authors' ``decompose_linear``), so truncating it
is the SVD-truncation baseline.

Shape: ``(*, in_features) -> (*, out_features)``. Initialization as the authors' two
``nn.Linear`` factors: ``v`` entries U(-1/sqrt(in), 1/sqrt(in)), ``u`` and the bias
U(-1/sqrt(r), 1/sqrt(r)).

Differences from the paper: ``lod_loss`` takes the loss function (cross-entropy against the soft
targets for classifiers; ``distill=False`` uses the true targets for both passes, as for the
autoencoder). Ranks are sampled from a passed ``torch.Generator`` (the authors shuffle a list with
NumPy's global RNG).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ._common import check_last_dim


class MaestroLinear(nn.Module):
    r"""``y = x V_{:b} U_{:b}^T + bias``: the first ``b`` active rank-one components (all by default).

    Options: ``rank`` (components, default ``min(in, out)``), ``bias``, ``device``, ``dtype``.
    ``forward(x, rank=None)`` uses ``rank`` components, or ``self.truncation`` when a
    ``truncated(...)`` context has set it, or all active ones.
    """

    def __init__(self, in_features: int, out_features: int, *, rank: int | None = None, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"MaestroLinear: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        r = min(in_features, out_features) if rank is None else int(rank)
        if r < 1:
            raise ConfigError(f"MaestroLinear: rank must be >= 1 (or None for min(in, out)), got {rank}")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.u = nn.Parameter(torch.empty(out_features, r, **factory))
        self.v = nn.Parameter(torch.empty(in_features, r, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.register_buffer("active", torch.ones(r, dtype=torch.bool, device=device))
        self.truncation: int | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r = self.u.shape[1]
        nn.init.uniform_(self.v, -self.in_features**-0.5, self.in_features**-0.5)
        nn.init.uniform_(self.u, -r**-0.5, r**-0.5)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -r**-0.5, r**-0.5)

    @property
    def rank(self) -> int:
        """Active components (the layer's rank after shrinking)."""
        return int(self.active.sum())

    def _index(self, rank: int | None) -> Tensor:
        idx = self.active.nonzero().flatten()
        b = self.truncation if rank is None else rank
        if b is None:
            return idx
        if not 0 <= b <= len(idx):
            raise ConfigError(f"MaestroLinear: rank {b} is outside [0, {len(idx)}] (its active components)")
        return idx[:b]

    def factors(self, rank: int | None = None) -> tuple[Tensor, Tensor]:
        """``(U_{:b}, V_{:b})`` of the first ``b`` active components."""
        idx = self._index(rank)
        return self.u[:, idx], self.v[:, idx]

    def forward(self, x: Tensor, rank: int | None = None) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        u, v = self.factors(rank)
        return F.linear(x @ v, u, self.bias)

    def dense_weight(self, rank: int | None = None) -> Tensor:
        """The reference form: ``W_b = U_{:b} V_{:b}^T`` (out x in)."""
        u, v = self.factors(rank)
        return u @ v.T

    def reference(self, x: Tensor, rank: int | None = None) -> Tensor:
        return F.linear(x, self.dense_weight(rank), self.bias)

    def component_norms(self, hierarchical: bool = False) -> tuple[Tensor, Tensor]:
        """Per component ``(||v_b||, ||u_b||)``, or with ``hierarchical`` the tail norms
        ``(||V_{:, b:}||_F, ||U_{:, b:}||_F)``."""
        on = self.active.to(self.v.dtype)  # switched-off components count for nothing
        v2, u2 = self.v.pow(2).sum(0) * on, self.u.pow(2).sum(0) * on
        if hierarchical:
            v2, u2 = v2.flip(0).cumsum(0).flip(0), u2.flip(0).cumsum(0).flip(0)
        return v2.sqrt(), u2.sqrt()

    def group_lasso(self, hierarchical: bool = True) -> Tensor:
        """``sum_b ||v_b|| + ||u_b||`` (or the tail norms with ``hierarchical``) over the active components."""
        v, u = self.component_norms(hierarchical)
        return (v + u)[self.active].sum()

    @torch.no_grad()
    def importance(self, hierarchical: bool = False) -> Tensor:
        """``||u_b|| ||v_b||`` per component (tail norms with ``hierarchical``); 0 where switched off."""
        v, u = self.component_norms(hierarchical)
        return torch.where(self.active, v * u, torch.zeros_like(v))

    @torch.no_grad()
    def shrink_(self, threshold: float, hierarchical: bool = True) -> int:
        """Progressive shrinking: switch off components whose importance is below ``threshold``
        (never on again). Returns the rank left."""
        self.active &= self.importance(hierarchical) >= threshold
        return self.rank

    @torch.no_grad()
    def prune_(self) -> int:
        """Drop the switched-off components from the parameters (new Parameter objects: build the
        optimizer afterwards). Returns the rank."""
        idx = self.active.nonzero().flatten()
        self.u = nn.Parameter(self.u[:, idx].clone())
        self.v = nn.Parameter(self.v[:, idx].clone())
        self.active = torch.ones(len(idx), dtype=torch.bool, device=self.active.device)
        return len(idx)

    @torch.no_grad()
    def truncate_(self, rank: int) -> int:
        """Keep only the first ``rank`` active components (prunes). Returns the rank."""
        keep = self._index(rank)
        self.active.zero_()
        self.active[keep] = True
        return self.prune_()

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> MaestroLinear:
        """The SVD of ``linear.weight`` split as ``U = U_svd sqrt(S)``, ``V = V_svd sqrt(S)``
        (components ordered by singular value): equal to ``linear`` at full rank."""
        w = linear.weight
        u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
        out = cls(linear.in_features, linear.out_features, rank=len(s), bias=linear.bias is not None,
                  device=w.device, dtype=w.dtype)
        out.u.copy_((u * s.sqrt()).to(w.dtype))
        out.v.copy_((vh.T * s.sqrt()).to(w.dtype))
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
        return out

    @torch.no_grad()
    def to_linear(self, rank: int | None = None) -> nn.Linear:
        """The dense equivalent ``nn.Linear`` with weight ``U_{:b} V_{:b}^T``."""
        w = self.dense_weight(rank)
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype)
        out.weight.copy_(w)
        if self.bias is not None:
            out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def maestro_layers(model: nn.Module) -> list[MaestroLinear]:
    return [m for m in model.modules() if isinstance(m, MaestroLinear)]


def decompose(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced, in place, by ``MaestroLinear.from_linear`` (its SVD)."""
    if isinstance(model, nn.Linear):
        return MaestroLinear.from_linear(model)
    for name, child in model.named_children():
        setattr(model, name, decompose(child))
    return model


def sample_truncation(layers: Sequence[MaestroLinear], generator: torch.Generator) -> tuple[int, int]:
    """Ordered dropout, one layer at a time: ``(layer index, rank b)`` drawn uniformly among all
    pairs ``(l, b)`` with ``1 <= b <= rank_l``."""
    ranks = [m.rank for m in layers]
    total = sum(ranks)
    if total < 1:
        raise ConfigError("sample_truncation needs at least one MaestroLinear with a component left")
    j = int(torch.randint(total, (), generator=generator))
    for i, r in enumerate(ranks):
        if j < r:
            return i, j + 1
        j -= r
    raise AssertionError("unreachable")


@contextmanager
def truncated(ranks: dict[MaestroLinear, int | None]) -> Iterator[None]:
    """Within the block each given layer computes with its first ``ranks[layer]`` components."""
    before = {m: m.truncation for m in ranks}
    try:
        for m, b in ranks.items():
            m.truncation = b
        yield
    finally:
        for m, b in before.items():
            m.truncation = b


@contextmanager
def uniform_rank_fraction(model: nn.Module, fraction: float) -> Iterator[None]:
    """Every MaestroLinear of ``model`` at ``ceil(fraction * rank)`` components (at least 1)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"rank fraction must be in (0, 1], got {fraction}")
    with truncated({m: max(1, math.ceil(fraction * m.rank)) for m in maestro_layers(model)}):
        yield


def sample_independent(layers: Sequence[MaestroLinear], generator: torch.Generator) -> dict[MaestroLinear, int]:
    """The authors' "across layers" sampler: every layer an independent rank, uniform in ``1..rank_l``."""
    return {m: int(torch.randint(1, m.rank + 1, (), generator=generator)) for m in layers if m.rank > 0}


SAMPLERS = ("single", "independent")


def lod_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
             generator: torch.Generator, *, lasso: float = 0.0, hierarchical: bool = True,
             distill: bool = True, sampler: str = "single") -> Tensor:
    """One LoD step's loss: ``loss_fn(model(x), y)`` + the loss of the sub-model with one sampled
    truncation (against ``softmax`` of the full output, detached, with ``distill``; against ``y``
    otherwise) + ``lasso`` * the group lasso of every MaestroLinear. ``sampler``: "single" (one
    (layer, rank) pair, the paper's) or "independent" (a rank for every layer at once)."""
    layers = maestro_layers(model)
    if not layers:
        raise ConfigError("lod_loss: the model has no MaestroLinear layer; decompose(model) first")
    if sampler not in SAMPLERS:
        raise ConfigError(f"lod_loss: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    full = model(x)
    loss = loss_fn(full, y)
    if sampler == "single":
        i, b = sample_truncation(layers, generator)
        ranks = {layers[i]: b}
    else:
        ranks = sample_independent(layers, generator)
    with truncated(ranks):
        part = model(x)
    loss = loss + loss_fn(part, full.detach().softmax(-1) if distill else y)
    if lasso:
        loss = loss + lasso * sum(m.group_lasso(hierarchical) for m in layers)
    return loss
