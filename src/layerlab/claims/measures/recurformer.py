r"""RecurFormer on a character-level language model: bpc after replacing the most recency-biased heads
by linear recurrences, and the inference cache measured on real tensors.

Paper: Yan et al., "RecurFormer: Not All Transformer Heads Need Self-Attention", 2024,
arXiv:2410.12850 (abstract: replacing the "recency aware" heads by linear RNNs "reduces the cache size
without evicting tokens", and with continual training "RecurFormer matches the original model's
performance"). Technique: ``compress.recurformer`` (recency score ``R = mean_t sum_{s=t-w+1}^{t} A_{t,s}``
on a training batch, the top ``level`` fraction of heads across layers replaced by LRUs over the heads'
values, then ``finetune_steps`` of Adam on training batches).

Per seed: a small attention LM trained by the Trainer on tinyshakespeare (``steps``); then, from the
trained weights, (a) the original continued for ``finetune_steps`` with the same optimizer and batches
as the fine-tuning (the fair reference: the same extra training), (b) RecurFormer at each level of
``levels`` with that fine-tuning, (c) RecurFormer at ``card_level`` without fine-tuning. Reported on
the test split: ``bpc_dense``, ``bpc_continued``, ``bpc_rf<level>``, ``bpc_rf<card>_nofinetune``,
``bpc_excess`` = bpc_rf(card_level) - bpc_continued, and ``cache_ratio_rf<level>`` = the scalars the
attention mixers hold after one test window (``compress.recurformer.kv_cache_scalars``: K and V of the
kept heads plus every recurrence's state, captured from a forward pass) over the original's, with
``cache_scalars_dense``.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ...compress import CompressContext, apply_technique
from ...compress.recurformer import PAPER, kv_cache_scalars
from ...errors import ConfigError
from . import register_measure
from ._fit import fit, one_thread


def _continue(model: nn.Module, task, loss_fn, steps: int, lr: float, batch_size: int, seed: int) -> nn.Module:
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model, task.train_batch(batch_size, gen)).backward()
        opt.step()
    return model.eval()


@register_measure("recurformer_text", metric="bpc_excess", paper=PAPER)
def recurformer_text(seed: int, *, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, steps: int = 600,
                     batch_size: int = 32, lr: float = 3e-3, length: int = 64, eval_tokens: int = 8192,
                     levels: Sequence[float] = (0.25, 0.5), card_level: float = 0.5, window: int = 2,
                     finetune_steps: int = 150, finetune_lr: float = 1e-3) -> dict[str, float]:
    levels = [float(v) for v in levels]
    if not levels or not all(0 < v <= 1 for v in levels) or float(card_level) not in levels:
        raise ConfigError(f"recurformer_text: levels must be in (0, 1] and include card_level; got {levels}, {card_level}")
    from ...spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
    from ...tasks import build_task

    params = {"length": length, "eval_tokens": eval_tokens}
    spec = RunSpec(task=TaskSpec("text", params),
                   model=ModelSpec(mixer="attention", channel="mlp", d_model=d_model, n_layers=n_layers,
                                   mixer_options={"n_heads": n_heads}),
                   optim=OptimSpec(lr=lr), train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0),
                   seed=seed)
    task = build_task("text", **params)

    def loss_fn(m, b):
        return task.loss(m(b.inputs), b)

    def bpc(m):
        return task.evaluate(m, "test")["bpc"]

    with one_thread():
        net, _, status = fit(spec, task)
        if status != "done":
            raise ConfigError(f"recurformer_text: training ended with status {status!r}; lower lr")
        net.eval()
        probe = task.eval_set("test").inputs[:1]
        out = {"bpc_dense": bpc(net), "cache_scalars_dense": float(kv_cache_scalars(net, probe))}
        out["bpc_continued"] = bpc(_continue(net, task, loss_fn, finetune_steps, finetune_lr, batch_size, seed + 1000))

        def ctx():  # the same calibration batch and fine-tuning batches for every level
            g = torch.Generator().manual_seed(seed + 1000)
            calib = task.train_batch(batch_size, torch.Generator().manual_seed(seed + 2000))
            return CompressContext(task=task, calibration=calib, generator=g, loss_fn=loss_fn)

        for level in levels:
            rf = apply_technique("recurformer", net, level, ctx(), window=window, finetune_steps=finetune_steps,
                                 lr=finetune_lr, batch_size=batch_size)
            out[f"bpc_rf{level:g}"] = bpc(rf)
            out[f"cache_ratio_rf{level:g}"] = kv_cache_scalars(rf, probe) / out["cache_scalars_dense"]
        raw = apply_technique("recurformer", net, card_level, ctx(), window=window, finetune_steps=0)
        out[f"bpc_rf{card_level:g}_nofinetune"] = bpc(raw)
        scores = sorted(s for v in raw.recurformer_scores.values() for s in v)
        out["recency_min"], out["recency_max"] = scores[0], scores[-1]
    out["bpc_excess"] = out[f"bpc_rf{card_level:g}"] - out["bpc_continued"]
    return out
