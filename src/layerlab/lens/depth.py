r"""How much each residual block changes the residual stream and the prediction.

Paper: Csordás, Manning & Potts, "Do Language Models Use Their Depth Efficiently?", 2025,
arXiv:2505.13898 (Sec. 3): with ``h_ℓ`` the residual stream entering block ``ℓ`` and
``h_{ℓ+1} = h_ℓ + Δh_ℓ``, the block's relative contribution is

    c_ℓ = ||Δh_ℓ|| / ||h_ℓ||       (per token position, then averaged),

and the importance of block ``ℓ`` for the output is the change of the prediction when the block is
skipped (``h_{ℓ+1} = h_ℓ``): here the mean KL divergence ``KL(p || p_{skip ℓ})`` of the output
distributions and the mean relative change of the logits ``||z - z_{skip ℓ}|| / ||z||``; the
paper reports that the second half of a deep model's blocks contributes much less than the first.

Blocks are the residual blocks of layerlab's backbones (``blocks.i`` / ``layers.i``: each maps the
stream to the stream) or named ones; skipping replaces a block's output by its input (a forward
hook). Side-effect free; forward passes under ``torch.no_grad`` in the model's dtype.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._util import side_effect_free
from .probes import ProbeContext, ProbeOutput, _block_names, _is_int, _require, register_probe


def _blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    names = _block_names(model) if blocks is None else list(blocks)
    if not names:
        raise ConfigError("depth: the model has no residual blocks (`blocks` or `layers` ModuleList); "
                          "pass blocks=[...] naming modules that map the residual stream to itself")
    named = dict(model.named_modules())
    missing = [n for n in names if n not in named]
    if missing:
        raise ConfigError(f"depth: unknown modules {missing}")
    return names


def _run(model: nn.Module, inputs: Any, blocks: list[str], skip: str | None) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
    named = dict(model.named_modules())
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            x = args[0]
            if not isinstance(output, Tensor) or output.shape != x.shape:
                raise ShapeError(f"depth: block {name!r} must map the stream to a tensor of its shape, got "
                                 f"{tuple(x.shape)} -> {getattr(output, 'shape', type(output).__name__)}")
            seen[name] = (x, output)
            return x if name == skip else None
        return hook

    handles = [named[n].register_forward_hook(hook_for(n)) for n in blocks]
    try:
        with torch.no_grad():
            out = model(inputs)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def _rel(num: Tensor, den: Tensor) -> Tensor:
    """``||num|| / ||den||`` over the last dim, per position (float64)."""
    return num.double().norm(dim=-1) / den.double().norm(dim=-1).clamp_min(1e-300)


def contributions(model: nn.Module, inputs: Any, *, blocks: Sequence[str] | None = None) -> dict[str, float]:
    """``{block: mean_positions ||Δh_ℓ|| / ||h_ℓ||}``."""
    with side_effect_free(model):
        names = _blocks(model, blocks)
        _, seen = _run(model, inputs, names, None)
    return {n: float(_rel(seen[n][1] - seen[n][0], seen[n][0]).mean()) for n in names if n in seen}


def skip_effects(model: nn.Module, inputs: Any, *, blocks: Sequence[str] | None = None,
                 mask: Tensor | None = None) -> dict[str, dict[str, float]]:
    """``{block: {"kl": mean KL(p || p_skip), "logit_change": mean ||z - z_skip|| / ||z||}}`` over
    the output positions (those where ``mask`` is True, if given), outputs ``(..., classes)``."""
    with side_effect_free(model):
        names = _blocks(model, blocks)
        full, _ = _run(model, inputs, names, None)
        out = {}
        for n in names:
            skipped, _ = _run(model, inputs, names, n)
            logp, logq = full.double().log_softmax(-1), skipped.double().log_softmax(-1)
            kl = (logp.exp() * (logp - logq)).sum(-1)
            change = _rel(full - skipped, full)
            if mask is not None:
                kl, change = kl[mask], change[mask]
            out[n] = {"kl": float(kl.mean()), "logit_change": float(change.mean())}
    return out


def _check_depth(options: dict) -> None:
    _require("depth", options, "n_examples", lambda v: _is_int(v, 1), "an integer >= 1")


@register_probe("depth", check=_check_depth)
def depth_probe(ctx: ProbeContext, *, n_examples: int = 32, skips: bool = True) -> ProbeOutput:
    """Per residual block: ``contribution.<block>`` (``||Δh|| / ||h||``) and, with ``skips``,
    ``skip_kl.<block>`` and ``skip_logit_change.<block>`` on the first ``n_examples`` probe
    examples (scored positions of token sequences)."""
    if not _block_names(ctx.model):
        return ProbeOutput()
    n = min(n_examples, len(ctx.batch))
    inputs = ctx.batch.inputs[:n]
    mask = ctx.batch.mask[:n] if getattr(ctx.batch, "mask", None) is not None else None
    scalars = {f"contribution.{b}": v for b, v in contributions(ctx.model, inputs).items()}
    if skips:
        for b, v in skip_effects(ctx.model, inputs, mask=mask).items():
            scalars[f"skip_kl.{b}"], scalars[f"skip_logit_change.{b}"] = v["kl"], v["logit_change"]
    return ProbeOutput(scalars)
