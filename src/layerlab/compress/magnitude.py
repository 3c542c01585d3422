"""Magnitude pruning: remove the weights of smallest absolute value, per layer or over the whole network.

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks"
(2015, arXiv:1506.02626). Their three steps: train, prune "all connections with weights below a
threshold", retrain the remaining connections. The pruned network is sparse: a connection is gone
when its weight is zero. Their threshold per layer is a quality parameter times the standard
deviation of that layer's weights (Section 4); here the *level* fixes the fraction removed instead,
so that techniques are compared at equal sparsity:

* ``magnitude_uniform``: every prunable tensor W_l (n_l entries) loses its k_l = round(s n_l)
  entries of smallest |w| -- the same sparsity s in each layer;
* ``magnitude_global``: one threshold over all prunable weights: the k = round(s N) entries of
  smallest |w| among all N prunable entries are removed (layers end up with different sparsities).

Ties are broken by position (a stable sort), so exactly k entries go. Prunable: the ``weight`` of
every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (biases with ``bias=True``, ``nn.Embedding`` tables with
``embedding=True``); norms and other parameters are never touched. A tensor shared by two modules
is pruned once; a tensor that belongs to an embedding stays dense unless ``embedding=True``.

What is stored: the returned copy keeps its ``nn.Linear``/``nn.Conv`` modules with the removed
weights set to exactly zero (the saving is measured as nonzeros). Retraining is not part of the
technique (a card that fine-tunes keeps the zeros with ``masks_of`` and ``apply_masks``).

Helpers reused by other pruning techniques: ``prunable_weights``, ``smallest_mask``, ``masks_of``,
``apply_masks``, ``sparsity``.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper
from .registry import CompressContext, register_technique

HAN_2015 = Paper("Learning both Weights and Connections for Efficient Neural Networks", 2015, "1506.02626")
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)


def prunable_weights(model: nn.Module, *, bias: bool = False, embedding: bool = False) -> dict[str, nn.Parameter]:
    """``{qualified name: parameter}`` of the prunable tensors of ``model``, in module order, each
    tensor once: Linear/Conv weights (and their biases with ``bias``), Embedding tables with
    ``embedding``. A tensor held by an Embedding is left out unless ``embedding`` (tied heads)."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        names = []
        if isinstance(module, WEIGHTED):
            names = ["weight"] + (["bias"] if bias else [])
        elif isinstance(module, nn.Embedding) and embedding:
            names = ["weight"]
        for pname in names:
            p = getattr(module, pname, None)
            if not isinstance(p, nn.Parameter) or id(p) in seen:
                continue
            if id(p) in embedded and not embedding:
                continue
            seen.add(id(p))
            out[f"{name}.{pname}" if name else pname] = p
    return out


def smallest_mask(scores: Tensor, k: int) -> Tensor:
    """A boolean mask of ``scores``' shape, False at the ``k`` entries of smallest score (ties by
    position: a stable sort), True elsewhere."""
    if not 0 <= k <= scores.numel():
        raise ConfigError(f"cannot remove {k} of {scores.numel()} entries; k must be in [0, {scores.numel()}]")
    flat = scores.detach().reshape(-1)
    order = torch.sort(flat, stable=True).indices
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = False
    return keep.reshape(scores.shape)


def masks_of(model: nn.Module, *, bias: bool = False, embedding: bool = False) -> dict[str, Tensor]:
    """The nonzero pattern (``weight != 0``) of each prunable tensor: the masks to keep while fine-tuning."""
    return {n: p.detach() != 0 for n, p in prunable_weights(model, bias=bias, embedding=embedding).items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> nn.Module:
    """Set the entries where ``masks[name]`` is False to zero, in place (``name`` as in
    ``model.named_parameters()``); returns ``model``."""
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, mask in masks.items():
        if name not in params:
            raise ConfigError(f"no parameter {name!r} to mask; the model has {sorted(params)[:8]}...")
        if mask.shape != params[name].shape:
            raise ConfigError(f"mask of {name!r} has shape {tuple(mask.shape)}, the parameter {tuple(params[name].shape)}")
        params[name].mul_(mask.to(params[name].dtype))
    return model


def finetune_masked(net: nn.Module, x: Tensor, y: Tensor, *, steps: int, lr: float, generator: torch.Generator,
                    batch: int = 64) -> nn.Module:
    """Adam on cross-entropy for ``steps`` minibatches of ``batch`` drawn from ``generator``, the pruned
    weights (the zeros of the prunable tensors at the start, ``masks_of``) set back to zero after every
    step. Works on ``net`` in place; returns it in eval mode."""
    masks = masks_of(net)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=generator)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
        apply_masks(net, masks)
    return net.eval()


def sparsity(model: nn.Module, *, bias: bool = False, embedding: bool = False) -> float:
    """Fraction of zeros among the prunable entries of ``model``."""
    ps = list(prunable_weights(model, bias=bias, embedding=embedding).values())
    total = sum(p.numel() for p in ps)
    return sum(int((p == 0).sum()) for p in ps) / total if total else 0.0


def _targets(model: nn.Module, level: float, bias: bool, embedding: bool,
             technique: str) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    if not 0.0 <= level <= 1.0:
        raise ConfigError(f"{technique}: level is the fraction of weights removed, in [0, 1]; got {level}")
    out = copy.deepcopy(model)
    params = prunable_weights(out, bias=bias, embedding=embedding)
    if not params:
        raise ConfigError(f"{technique}: the model has no prunable weights (nn.Linear / nn.Conv weights"
                          f"{', nn.Embedding tables' if embedding else ''}); set embedding=True to prune embeddings")
    return out, params


@register_technique("magnitude_uniform", paper=HAN_2015, level_kind="sparsity", levels=LEVELS)
def magnitude_uniform(model: nn.Module, level: float, ctx: CompressContext | None = None, *,
                      bias: bool = False, embedding: bool = False) -> nn.Module:
    """Prune each prunable tensor to sparsity ``level``: its round(level * n_l) entries of smallest |w|
    are set to zero. Returns a pruned copy (``ctx`` is not read)."""
    out, params = _targets(model, level, bias, embedding, "magnitude_uniform")
    with torch.no_grad():
        for p in params.values():
            p.mul_(smallest_mask(p.abs(), round(level * p.numel())).to(p.dtype))
    return out


@register_technique("magnitude_global", paper=HAN_2015, level_kind="sparsity", levels=LEVELS)
def magnitude_global(model: nn.Module, level: float, ctx: CompressContext | None = None, *,
                     bias: bool = False, embedding: bool = False) -> nn.Module:
    """Prune with one threshold over all prunable tensors: the round(level * N) entries of smallest |w|
    among all N prunable entries are set to zero. Returns a pruned copy (``ctx`` is not read)."""
    out, params = _targets(model, level, bias, embedding, "magnitude_global")
    flat = torch.cat([p.detach().abs().reshape(-1).double().cpu() for p in params.values()])
    keep = smallest_mask(flat, round(level * flat.numel()))
    with torch.no_grad():
        start = 0
        for p in params.values():
            n = p.numel()
            p.mul_(keep[start:start + n].reshape(p.shape).to(device=p.device, dtype=p.dtype))
            start += n
    return out
