r"""RecurFormer: the most recency-biased attention heads replaced by a linear recurrence.

Paper: Yan, Zheng, Du, Zou, Guo, Yang, "RecurFormer: Not All Transformer Heads Need
Self-Attention", 2024, arXiv:2410.12850. Verified from the abstract (search tool): some heads'
attention weights "concentrate on tokens near the query token, termed as recency aware"; RecurFormer
"replaces these attention heads with linear recurrent neural networks (RNNs), specifically the Mamba
architecture", which "reduces the cache size without evicting tokens" and reuses the pre-trained
weights "with continual training". The paper's exact recency statistic could not be read here;
we use the attention mass on the last ``w`` keys (below), which is what "recency aware" describes.

Algorithm, for a model whose attention mixers have heads ``(l, i)`` with weights
``A^{l,i}_{t,s} = softmax(Q_i K_i^T / sqrt(d_h) + M)_{t,s}`` on the calibration batch:

    R_{l,i} = mean over sequences b and queries t >= w of  sum_{s = t-w+1}^{t} A^{l,i}_{b,t,s}     (recency score)
    replace the round(level * H_total) heads of largest R (over all layers) by
        x_t = diag(lambda) x_{t-1} + gamma (.) (B v_t),   head_t = Re(C x_t) + D (.) v_t       (layerlab's `lru`)
    with v_t = X W_i^V the head's own value projection; the remaining heads keep softmax attention;
    Concat(heads) W^O as before; then fine-tune all weights for ``finetune_steps`` on training batches.

Queries ``t < w`` are left out of the score: for them the last ``w`` keys are all the keys and the
mass is 1 whatever the head does.

Deviations: the recurrence is the LRU (Orvieto et al. 2023, registered as `lru`), one per replaced
head, of width ``d_h``, fed with the head's value ``v_t``, not Mamba over the block input (a
time-invariant linear recurrence; the issue names `lru` or `mamba`); its eigenvalues start on the
ring ``r_min <= |lambda| <= r_max`` (defaults 0 and 0.9: short memories, since the replaced heads look
at recent tokens). Heads are ranked across all layers at once.

Inference state: :class:`RecurFormerAttention.inference_cache` returns the tensors a token-by-token
decoder holds after a prefix (keys and values of the kept heads, the final state of each recurrence);
``cache_size(length)`` counts the scalars of those real tensors, so
``train.footprint.inference_state_size`` measures the saving rather than computing it.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.mixers.attention import CausalSelfAttention, causal_softmax
from ..blocks.mixers.base import Mixer, State, state_numel
from ..errors import ConfigError, ShapeError
from ..registry import Paper, build
from .registry import CompressContext, register_technique

PAPER = Paper("RecurFormer: Not All Transformer Heads Need Self-Attention", 2024, "2410.12850")


def recency_scores(probs: Tensor, window: int) -> Tensor:
    """``R_i`` of every head from attention weights ``probs`` (B, h, L, L) (row t: query t):
    the mean over sequences and queries ``t >= window`` of the mass on keys ``t-window+1 .. t``; (h,)."""
    if probs.dim() != 4 or probs.shape[-1] != probs.shape[-2]:
        raise ShapeError(f"recency_scores expects attention weights (B, h, L, L); got {tuple(probs.shape)}")
    L = probs.shape[-1]
    if not 1 <= int(window) < L:
        raise ConfigError(f"recency window must be in [1, L - 1] = [1, {L - 1}] for sequences of length {L}, "
                          f"got {window}; lower the window or calibrate on longer sequences")
    t = torch.arange(L, device=probs.device)
    near = (t[:, None] - t[None, :] >= 0) & (t[:, None] - t[None, :] < window)  # (query t, key s)
    mass = (probs * near).sum(-1)  # (B, h, L)
    return mass[..., window:].mean(dim=(0, 2))


class RecurFormerAttention(Mixer):
    """A :class:`CausalSelfAttention` whose heads ``replaced`` are computed by an LRU over the head's
    value stream (see the module docstring); the other heads are unchanged. ``(B, L, D) -> (B, L, D)``.
    Modes: ``"sdpa"`` (fused attention, parallel-scan recurrences) and ``"reference"`` (written-out
    softmax, token-by-token recurrences)."""

    modes = ("sdpa", "reference")

    def __init__(self, attention: CausalSelfAttention, replaced: Sequence[int] = (), *, d_state: int | None = None,
                 r_min: float = 0.0, r_max: float = 0.9, generator: torch.Generator | None = None) -> None:
        super().__init__(attention.d_model)
        h = attention.n_heads
        replaced = sorted({int(i) for i in replaced})
        if any(not 0 <= i < h for i in replaced):
            raise ConfigError(f"RecurFormerAttention: replaced heads must be in [0, {h - 1}], got {replaced}")
        self.attention = attention
        self.replaced = tuple(replaced)
        self.kept = tuple(i for i in range(h) if i not in replaced)
        p = next(attention.parameters())
        self.recurrences = nn.ModuleList(
            build("mixer", "lru", attention.d_head, d_state=d_state or attention.d_head, r_min=r_min, r_max=r_max,
                  generator=generator, device=p.device, dtype=p.dtype)
            for _ in self.replaced)

    def _heads(self, x: Tensor, mode: str) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        q, k, v = self.attention._heads(x)
        lru_mode = "parallel" if mode == "sdpa" else "reference"
        recurrent = [lru(v[:, i], mode=lru_mode) for i, lru in zip(self.replaced, self.recurrences)]
        return q, k, v, recurrent

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if not self.replaced:  # exactly the original attention
            return self.attention(x, mode=mode)
        B, L, D = x.shape
        q, k, v, recurrent = self._heads(x, mode)
        heads = torch.empty_like(v)
        if self.kept:
            kept = list(self.kept)
            qk, kk, vk = q[:, kept], k[:, kept], v[:, kept]
            if mode == "sdpa":
                heads[:, kept] = F.scaled_dot_product_attention(qk, kk, vk, is_causal=True)
            else:
                heads[:, kept] = causal_softmax(qk, kk).to(v.dtype) @ vk
        for i, y in zip(self.replaced, recurrent):
            heads[:, i] = y
        a = self.attention
        return a.dropout(a.w_o(heads.transpose(1, 2).reshape(B, L, D)))

    def attention_probabilities(self, x: Tensor) -> Tensor:
        """Softmax weights of the kept heads only (B, h_kept, L, L)."""
        return self.attention.attention_probabilities(x)[:, list(self.kept)]

    def inference_cache(self, x: Tensor) -> State:
        """The tensors a token-by-token decoder holds after the prefix ``x`` (B, L, D): keys and values
        of the kept heads (B, h_kept, L, d_h) each, and the last state of every recurrence."""
        with torch.no_grad():
            q, k, v = self.attention._heads(x)
            kept = list(self.kept)
            states = [lru.states(v[:, i], mode="parallel")[:, -1] for i, lru in zip(self.replaced, self.recurrences)]
            return (k[:, kept], v[:, kept], *states)

    def cache_size(self, length: int) -> int:
        """Real scalars of :meth:`inference_cache` for one sequence of ``length`` tokens (measured)."""
        p = next(self.parameters())
        return state_numel(self.inference_cache(torch.zeros(1, int(length), self.d_model, device=p.device,
                                                            dtype=p.dtype)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, replaced heads={list(self.replaced)}, kept heads={list(self.kept)}"


def attention_mixers(model: nn.Module) -> list[tuple[str, CausalSelfAttention]]:
    """(name, module) of every plain attention mixer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if type(m) is CausalSelfAttention]


def head_recency(model: nn.Module, tokens: Tensor, window: int) -> dict[str, Tensor]:
    """Recency score (h,) of every attention mixer's heads on ``tokens``, measured on that mixer's
    real input (captured by a forward hook)."""
    found = attention_mixers(model)
    inputs: dict[str, Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=n: inputs.__setitem__(name, args[0].detach()))
             for n, m in found]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(tokens)
            return {n: recency_scores(m.attention_probabilities(inputs[n]), window) for n, m in found}
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def kv_cache_scalars(model: nn.Module, tokens: Tensor) -> int:
    """Scalars of the inference state the attention mixers of ``model`` hold after ``tokens`` (B, L):
    every plain attention's keys and values and every RecurFormerAttention's :meth:`inference_cache`,
    counted from real tensors captured on a forward pass."""
    total = [0]

    def hook(mod: nn.Module, args: tuple, out: Tensor) -> None:
        x = args[0]
        if isinstance(mod, RecurFormerAttention):
            total[0] += state_numel(mod.inference_cache(x))
        else:
            _, k, v = mod._heads(x)
            total[0] += k.numel() + v.numel()

    mods = [m for m in model.modules() if isinstance(m, RecurFormerAttention)
            or (type(m) is CausalSelfAttention and not _inside_recurformer(model, m))]
    hooks = [m.register_forward_hook(hook) for m in mods]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for hk in hooks:
            hk.remove()
    return total[0]


def _inside_recurformer(model: nn.Module, module: nn.Module) -> bool:
    return any(isinstance(m, RecurFormerAttention) and m.attention is module for m in model.modules())


@register_technique("recurformer", paper=PAPER, level_kind="sparsity", levels=(0.25, 0.5, 0.75))
def recurformer(model: nn.Module, level: float, ctx: CompressContext, *, window: int = 2,
                finetune_steps: int = 100, lr: float = 1e-3, batch_size: int = 32,
                d_state: int | None = None, r_min: float = 0.0, r_max: float = 0.9) -> nn.Module:
    """Replace the fraction ``level`` of all attention heads, those of largest recency score
    (``window`` last keys, on ``ctx.calibration``), by LRUs, then fine-tune all weights with Adam
    (``lr``) for ``finetune_steps`` steps of ``batch_size`` training sequences (``ctx.task``,
    ``ctx.generator``, ``ctx.loss_fn``). Returns a copy; level 0 returns an unchanged copy."""
    if finetune_steps < 0 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"recurformer: need finetune_steps >= 0, batch_size >= 1, lr > 0; got "
                          f"{finetune_steps}, {batch_size}, {lr}")
    out = copy.deepcopy(model)
    found = attention_mixers(out)
    if not found:
        raise ConfigError("recurformer needs a model with attention mixers (mixer = 'attention'); found none")
    scores = head_recency(out, ctx.calibration.inputs, window)
    ranked = sorted(((float(s), n, i) for n, sc in scores.items() for i, s in enumerate(sc)), key=lambda r: -r[0])
    n_replace = int(round(level * len(ranked)))
    chosen: dict[str, list[int]] = {n: [] for n, _ in found}
    for _, n, i in ranked[:n_replace]:
        chosen[n].append(i)
    for n, m in found:
        _set_module(out, n, RecurFormerAttention(m, chosen[n], d_state=d_state, r_min=r_min, r_max=r_max,
                                                 generator=ctx.generator))
    out.recurformer_scores = {n: s.tolist() for n, s in scores.items()}  # what was measured, for the record
    if n_replace and finetune_steps:
        opt = torch.optim.Adam(out.parameters(), lr=lr)
        out.train()
        for _ in range(finetune_steps):
            batch = ctx.task.train_batch(batch_size, ctx.generator).to(ctx.device)
            opt.zero_grad(set_to_none=True)
            ctx.loss_fn(out, batch).backward()
            opt.step()
    return out.eval()
