r"""Do weight outlier metrics predict the post-training-quantization drop across optimizers?

Paper: Vlassis, Ashkboos, Volkova, Hoefler & Alistarh, "Beyond Outliers: A Study of Optimizers Under
Quantization", 2025, arXiv:2509.23500. Abstract (verified): full-precision models (50M-1.5B
parameters) trained with six optimizers, then post-training quantization (PTQ); "outlier-related
metrics, such as the max-to-mean ratio (MMR) and Kurtosis, fail to predict the PTQ performance across
different optimizers", because the MMR captures "only isolated layer errors" while quantization
errors "accumulate and propagate through the network"; under quantization-aware training (QAT),
optimizers that are best in full precision "may not remain optimal", and Shampoo degrades least.

The measurement, per seed: a ReLU MLP (``width`` x ``depth``) on digits, from one initialization,
trained by each of AdamW, SGD (momentum 0.9) and Muon (layerlab's ``methods.muon`` optimizer on the
hidden matrices, AdamW on the first and last layer and the biases) at every learning rate of its
grid (``_quantize_digits.train_digits``: warmup then cosine, no weight decay). Each model whose
validation accuracy reaches ``min_val_accuracy`` is quantized with ``compress.quantize.rtn`` (weight-
only, symmetric, per output row) at ``bits``, and its *PTQ drop* is the increase of the test
cross-entropy (the analogue of the paper's perplexity). Its outlier metrics
(``lens.outliers.weight_outliers``): MMR = max|W|/mean|W| and kurtosis of each Linear weight, mean
over layers. Across the models of the seed:

- ``rho_mmr``, ``rho_kurtosis``: Spearman's rank correlation of each metric with the PTQ drop;
- ``error = max(rho_mmr, rho_kurtosis)``: small when neither metric ranks the models by their drop
  (the paper's claim), large when one does;
- recorded, not ruled on: the same correlations for the per-row weight metrics and for the metrics
  of the layers' inputs on the test set (``activation_outliers``), for the drop at 4 bits, and for
  the mean relative weight error ``||Q(W) - W||_F / ||W||_F`` (the "isolated layer error"); per
  optimizer at its best learning rate (validation accuracy): the float test accuracy and loss, the
  RTN drops at 8/4/3 bits, MMR, kurtosis, and with ``qat=True`` the test accuracy of the same
  network trained from scratch with QAT at ``bits`` (``methods.qat_ste``); ``n_models``.
"""
from __future__ import annotations

import math

import torch

from ...compress.quantize import dequantize, rtn, symmetric_rtn
from ...errors import ConfigError
from ...lens.outliers import activation_outliers, weight_outliers
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits
from ._fit import one_thread
from ._quantize_digits import OPTIMIZERS, evaluate, spearman, train_digits

PAPER = Paper("Beyond Outliers: A Study of Optimizers Under Quantization", 2025, "2509.23500")


def relative_weight_error(net: torch.nn.Module, bits: int) -> float:
    """Mean over Linear layers of ||Q_b(W) - W||_F / ||W||_F (RTN)."""
    errs = []
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight.detach()
            q = dequantize(*symmetric_rtn(w, bits), w.dtype)
            errs.append(float((q - w).norm() / w.norm()))
    return sum(errs) / len(errs)


@register_measure("optimizer_quantization_outliers", metric="error", paper=PAPER)
def optimizer_quantization_outliers(seed: int, *, adamw_lrs: list[float] = (1e-3, 3e-3, 1e-2),
                                    sgd_lrs: list[float] = (0.03, 0.1, 0.3), muon_lrs: list[float] = (1e-3, 3e-3, 1e-2),
                                    width: int = 64, depth: int = 2, steps: int = 1500, batch: int = 64, bits: int = 3,
                                    min_val_accuracy: float = 0.9, qat: bool = True) -> dict[str, float]:
    grids = {"adamw": [float(v) for v in adamw_lrs], "sgd": [float(v) for v in sgd_lrs],
             "muon": [float(v) for v in muon_lrs]}
    if any(not g or any(not (v > 0 and math.isfinite(v)) for v in g) for g in grids.values()):
        raise ConfigError(f"optimizer_quantization_outliers: each lr grid needs >= 1 finite value > 0; got {grids}")
    if not 2 <= int(bits) <= 8 or int(bits) != bits:
        raise ConfigError(f"optimizer_quantization_outliers: bits must be an integer in [2, 8], got {bits!r}")
    bits = int(bits)
    d = digits_splits()
    (x, y), (xv, yv), (xt, yt) = d["train"], d["val"], d["test"]
    models: list[dict[str, float]] = []
    best: dict[str, tuple[tuple[float, float], float, dict[str, float]]] = {}
    with one_thread():
        for opt in OPTIMIZERS:
            for lr in grids[opt]:
                net = train_digits(x, y, seed, optimizer=opt, lr=lr, width=width, depth=depth, steps=steps, batch=batch)
                val_loss, val_acc = evaluate(net, xv, yv)
                if not (val_acc >= min_val_accuracy and math.isfinite(val_loss)):
                    continue
                loss, acc = evaluate(net, xt, yt)
                row = {"loss": loss, "accuracy": acc}
                for b in sorted({8, 4, 3, bits}):
                    qloss, qacc = evaluate(rtn(net, b), xt, yt)
                    row[f"drop{b}"] = qloss - loss
                    row[f"acc_drop{b}"] = acc - qacc
                w, a = weight_outliers(net)["mean"], activation_outliers(net, xt)["mean"]
                row.update({k: w[k] for k in ("mmr", "kurtosis", "row_mmr", "row_kurtosis")})
                row.update({"act_mmr": a["mmr"], "act_kurtosis": a["kurtosis"]})
                row["weight_error"] = relative_weight_error(net, bits)
                models.append(row)
                key = (val_acc, -val_loss)
                if opt not in best or key > best[opt][0]:
                    best[opt] = (key, lr, row)
        out: dict[str, float] = {"n_models": float(len(models))}
        for opt, (_, lr, row) in best.items():
            out[f"{opt}_lr"] = lr
            out[f"{opt}_test_accuracy"] = row["accuracy"]
            out[f"{opt}_test_loss"] = row["loss"]
            for b in sorted({8, 4, 3, bits}):
                out[f"{opt}_drop{b}"] = row[f"drop{b}"]
                out[f"{opt}_acc_drop{b}"] = row[f"acc_drop{b}"]
            out[f"{opt}_mmr"], out[f"{opt}_kurtosis"] = row["mmr"], row["kurtosis"]
            if qat:
                net = train_digits(x, y, seed, optimizer=opt, lr=lr, width=width, depth=depth, steps=steps,
                                   batch=batch, qat_bits=bits)
                out[f"{opt}_qat{bits}_test_loss"], out[f"{opt}_qat{bits}_test_accuracy"] = evaluate(net, xt, yt)
    drop = [m[f"drop{bits}"] for m in models]
    for key in ("mmr", "kurtosis", "row_mmr", "row_kurtosis", "act_mmr", "act_kurtosis", "weight_error"):
        out[f"rho_{key}"] = spearman([m[key] for m in models], drop)
    out["rho_mmr_drop4"] = spearman([m["mmr"] for m in models], [m["drop4"] for m in models])
    out["rho_kurtosis_drop4"] = spearman([m["kurtosis"] for m in models], [m["drop4"] for m in models])
    out["error"] = max(out["rho_mmr"], out["rho_kurtosis"])
    return out
