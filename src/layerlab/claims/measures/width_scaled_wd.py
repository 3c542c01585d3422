r"""Learning-rate transfer across width under the width-scaled AdamW rule, against plain AdamW.

Paper: Fan, Liu, Zhao, Yuan & Gu, "Robust Layerwise Scaling Rules by Proper Weight Decay Tuning",
2025, arXiv:2510.15262 (abstract; Sec. 3-4): with matrix-like parameters at η₂ = η d₀/d and
λ₂ = λ √(d/d₀) and vector-like ones at η₁ = η, λ₁ = 0 (method ``width_scaled_wd``), the η and λ
tuned at a proxy width d₀ transfer zero-shot to a wider model; the top singular values of the
matrices stay matched across widths.

The measurement trains the classifier backbone (``n_layers`` residual pre-RMSNorm MLP blocks) on
digits at widths d₀ = ``widths[0]`` and d = ``widths[1]``, over the learning-rate grid ``lrs``
(a geometric grid), with plain AdamW (weight decay λ on every matrix, the run's default) and with
the rule (``base_width`` = d₀), all at one λ = ``weight_decay``. For each (optimizer, width) the
learning rate with the lowest final loss (``select``: the training loss of the last logging
window, the paper's pre-training loss, or ``"val"``: the validation loss) is refined by the vertex of a parabola in
log-lr through it and its neighbours. ``error`` is the shift of the rule's optimum from d₀ to d in
grid steps, |log(η*_d / η*_d₀)| / log(grid ratio); ``plain_shift`` is plain AdamW's (signed: < 0
when the wide model wants a smaller η). Also: test accuracies at each optimum, edge flags, and the
mean top singular value of the hidden MLP matrices of each width at the d₀ optimum
(``sigma_max_ratio_*``: wide / base).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...registry import Paper
from ...spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from ...tasks import build_task
from . import register_measure
from ._fit import final_loss, fit, one_thread, refined_argmin

PAPER = Paper("Robust Layerwise Scaling Rules by Proper Weight Decay Tuning", 2025, "2510.15262")
VARIANTS = ("plain", "scaled")


def hidden_sigma_max(model: torch.nn.Module) -> float:
    """Mean top singular value of the residual blocks' 2-D weights (the matrix-like hidden ones)."""
    mats = [p.detach().double() for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("layers.")]
    return sum(float(torch.linalg.matrix_norm(w, ord=2)) for w in mats) / len(mats)


def _spec(seed: int, width: int, lr: float, variant: str, base_width: int, weight_decay: float, steps: int,
          batch_size: int, n_layers: int) -> RunSpec:
    methods = (MethodSpec("width_scaled_wd", {"base_width": base_width}),) if variant == "scaled" else ()
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=width, n_layers=n_layers),
                   optim=OptimSpec(lr=lr, weight_decay=weight_decay, warmup_steps=max(1, steps // 20)),
                   train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0, log_every=max(1, steps // 10)),
                   seed=seed, methods=methods)


@register_measure("width_scaled_wd_transfer", metric="error", paper=PAPER)
def width_scaled_wd_transfer(seed: int, *, widths: list[int] = (64, 256), lrs: list[float] = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2),
                             weight_decay: float = 0.1, steps: int = 300, batch_size: int = 64,
                             n_layers: int = 1, select: str = "train_loss") -> dict[str, float]:
    widths, lrs = list(widths), [float(v) for v in lrs]
    if len(widths) != 2 or any(w < 1 for w in widths) or widths[1] <= widths[0]:
        raise ConfigError(f"width_scaled_wd_transfer: widths must be [d0, d] with 1 <= d0 < d, got {widths}")
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    if len(lrs) < 3 or any(v <= 0 for v in lrs) or max(ratios) - min(ratios) > 1e-9 * max(ratios) or ratios[0] <= 1:
        raise ConfigError(f"width_scaled_wd_transfer: lrs must be an increasing geometric grid of >= 3 values, got {lrs}")
    if select not in ("train_loss", "val"):
        raise ConfigError(f"width_scaled_wd_transfer: select must be 'train_loss' or 'val', got {select!r}")
    if steps < 1 or batch_size < 1 or n_layers < 1 or weight_decay < 0:
        raise ConfigError("width_scaled_wd_transfer: need steps, batch_size, n_layers >= 1 and weight_decay >= 0")
    step = math.log(ratios[0])
    log_lrs = [math.log(v) for v in lrs]
    task = build_task("digits")
    out: dict[str, float] = {}
    best: dict[tuple[str, int], float] = {}
    with one_thread():
        for variant in VARIANTS:
            sigmas: dict[int, list[float]] = {}
            for width in widths:
                losses, accs, sigmas[width] = [], [], []
                for lr in lrs:
                    model, res, status = fit(_spec(seed, width, lr, variant, widths[0], weight_decay, steps,
                                                   batch_size, n_layers), task)
                    losses.append(final_loss(res, status, select))
                    accs.append(res.get("test", {}).get("accuracy", math.nan))
                    sigmas[width].append(hidden_sigma_max(model))
                opt, edge = refined_argmin(log_lrs, losses)
                best[(variant, width)] = opt
                i = min(range(len(lrs)), key=lambda k: losses[k])
                out[f"{variant}_{width}_log2_lr"] = opt / math.log(2)
                out[f"{variant}_{width}_loss"] = losses[i]
                out[f"{variant}_{width}_test_accuracy"] = accs[i]
                out[f"{variant}_{width}_at_edge"] = float(edge)
            # top singular values at the base width's best grid lr (the lr that would be transferred)
            i0 = min(range(len(lrs)), key=lambda k: abs(log_lrs[k] - best[(variant, widths[0])]))
            sig = [sigmas[w][i0] for w in widths]
            out[f"sigma_max_{variant}_base"], out[f"sigma_max_{variant}_wide"] = sig
            out[f"sigma_max_ratio_{variant}"] = sig[1] / sig[0]
    d0, d = widths
    out["error"] = abs(best[("scaled", d)] - best[("scaled", d0)]) / step
    out["plain_shift"] = (best[("plain", d)] - best[("plain", d0)]) / step
    out["scaled_shift"] = (best[("scaled", d)] - best[("scaled", d0)]) / step
    return out
