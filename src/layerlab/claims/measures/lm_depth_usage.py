r"""Do the later blocks of a small language model matter less than the earlier ones?

Paper: Csordás, Manning & Potts, "Do Language Models Use Their Depth Efficiently?", 2025,
arXiv:2505.13898 (abstract: "layers in the second half contribute much less than those in the
first half"; Sec. 3: skipping a layer of the second half changes the output and the later
computation far less). ``lens.depth.skip_effects`` skips one residual block at a time.

The measurement trains a character-level attention model on tinyshakespeare (layerlab's `text`
task, ``length`` 64) with the project's Trainer (AdamW, ``lr``, ``steps``, batch 32, one thread),
``n_layers`` blocks of width ``d_model`` (4 heads, GELU MLP), then skips each block in turn on the
first 64 test sequences and reports ``kl_<i>`` (mean ``KL(p || p_skip)`` over the scored
positions), ``ratio = mean_{i >= L/2} kl_i / mean_{i < L/2} kl_i`` (the rule's ``error``) and the
test bits per character.
"""
from __future__ import annotations

from ...errors import ConfigError
from ...lens import depth
from ...registry import Paper
from ...spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from ...tasks import build_task
from . import register_measure
from ._fit import fit, one_thread


@register_measure("lm_depth_usage", metric="error",
                  paper=Paper("Do Language Models Use Their Depth Efficiently?", 2025, "2505.13898"))
def lm_depth_usage(seed: int, *, n_layers: int = 6, d_model: int = 48, steps: int = 400, lr: float = 3e-3,
                   length: int = 64) -> dict[str, float]:
    if n_layers < 2 or n_layers % 2 or d_model < 4 or steps < 1 or not lr > 0:
        raise ConfigError(f"lm_depth_usage: need an even n_layers >= 2, d_model >= 4, steps >= 1, lr > 0; got "
                          f"{n_layers}, {d_model}, {steps}, {lr}")
    spec = RunSpec(task=TaskSpec("text", {"length": length, "eval_tokens": 8192}),
                   model=ModelSpec(backbone="sequence", mixer="attention", channel="mlp", d_model=d_model,
                                   n_layers=n_layers, mixer_options={"n_heads": 4}),
                   optim=OptimSpec(lr=lr, warmup_steps=50, weight_decay=0.01),
                   train=TrainSpec(steps=steps, batch_size=32, eval_every=0, log_every=50), seed=seed)
    task = build_task("text", length=length, eval_tokens=8192)
    with one_thread():
        model, results, status = fit(spec, task)
        batch = task.eval_set("test").slice(0, 64)
        effects = depth.skip_effects(model, batch.inputs, mask=batch.mask)
    kl = [effects[f"blocks.{i}"]["kl"] for i in range(n_layers)]
    half = n_layers // 2
    ratio = (sum(kl[half:]) / half) / (sum(kl[:half]) / half)
    out = {"error": ratio, "ratio": ratio, "bpc": float(results.get("test", {}).get("bpc", float("nan"))),
           "trained": float(status == "done")}
    out.update({f"kl_{i}": v for i, v in enumerate(kl)})
    return out
