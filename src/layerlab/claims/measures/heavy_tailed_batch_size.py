r"""Smaller batches, more heavy-tailed layer spectra (Martin & Mahoney's batch-size experiment).

Paper: C. H. Martin, M. W. Mahoney, "Implicit Self-Regularization in Deep Neural Networks: Evidence
from Random Matrix Theory and Implications for Learning", JMLR 22(165), 2021, arXiv:1810.01075.
Abstract (verified): "by exploiting the generalization gap phenomena, we demonstrate that we can
cause a small model to exhibit all 5+1 phases of training simply by changing the batch size. This
demonstrates that—all else being equal—DNN optimization with larger batch sizes leads to
less-well implicitly-regularized models". The phases order the empirical spectral density (ESD)
of a layer's ``X = WᵀW`` from Random-like (Marchenko–Pastur, the initialization) through
Bleeding-out and Bulk+Spikes to Heavy-Tailed; in the heavy-tailed phases the ESD's tail fits
``ρ(λ) ∝ λ^(-α)`` with smaller ``α`` for stronger correlations (weakly heavy-tailed ``α > 4``,
moderately ``2 < α < 4``, very ``α < 2``). Their experiment: MiniAlexNet on CIFAR-10, batch sizes
2 to 1000, the ESDs of its two hidden fully-connected layers; smaller batches gave the more
heavy-tailed ESDs.

The measurement trains, per seed, two copies of one initialization of a ReLU MLP
``64 -> width -> width -> 10`` (PyTorch's default init, float32) on the digits training split (70%
of 1797 images) by plain SGD (constant step ``lr``, no momentum or weight decay) for ``epochs``
epochs of shuffled mini-batches (one shuffle order per seed), with batch size ``small_batch`` and
``large_batch``: all else equal, as in the paper (so the small batch takes more, noisier steps).
Each trained model is read by ``lens.spectra.model_summary`` (WeightWatcher's ``analyze()``:
the WeightWatcher-compatible power-law fit of each layer's ESD, its ``quality_metrics``, the
``marchenko_pastur`` bulk and spikes, and ``correlation_traps`` on the entry-shuffled matrix) over
the layers with at least ``min_evals`` eigenvalues (the two hidden matrices: 64 and ``width``
eigenvalues; the 10-eigenvalue output layer is left out). ``alpha_gap = mean α(small) - mean
α(large)``: negative when the smaller batch gives the more heavy-tailed layers, as the paper says.
Recorded beside it: per batch size the mean α, ``alpha_weighted``, ``log_alpha_norm``, spikes and
traps, the MP soft rank ``λ+ / λ_max`` (mean over the layers), and train/test accuracy; the
initialization's mean α and spikes (the Random-like phase); and, with ``step_matched``, a control
the paper does not run: the large batch trained for as many steps as the small one
(``large_step_matched.*``), which separates the batch size's noise from the number of updates.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import spectra
from ...registry import Paper
from ...tasks.digits import Digits
from . import register_measure


def _train(seed: int, width: int, batch: int, epochs: int, lr: float, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                              nn.Linear(width, 10))
    params = list(model.parameters())
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=order)
        for start in range(0, len(y), batch):
            idx = perm[start:start + batch]
            grads = torch.autograd.grad(nn.functional.cross_entropy(model(x[idx]), y[idx]), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(lr * g)
    return model


def _read(model: nn.Module, min_evals: int, seed: int) -> dict[str, float]:
    s = spectra.model_summary(model, method="weightwatcher", randomize=True, min_evals=min_evals,
                              generator=torch.Generator().manual_seed(seed))
    rows = s.layers

    def mean(key: str) -> float:
        vals = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        return sum(vals) / len(vals) if vals else math.nan

    soft = {}
    for r in rows:  # MP soft rank λ+ / λ_max of X = WᵀW/N (Martin & Mahoney, Sec. 4)
        n, m = int(r["N"]), int(r["M"])
        lam_plus = spectra.mp_edges(n / m, float(r["mp_sigma2"]))[1]
        soft[f"mp_soft_rank.{r['name']}"] = lam_plus / (10 ** float(r["log_spectral_norm"]) / n)
    return {"alpha": mean("alpha"), "alpha_weighted": mean("alpha_weighted"), "log_alpha_norm": mean("log_alpha_norm"),
            "n_spikes": float(sum(int(r["n_spikes"]) for r in rows)),
            "num_traps": float(sum(float(r["num_traps"]) for r in rows)),
            "mp_soft_rank": sum(soft.values()) / len(soft) if soft else math.nan, "layers": float(len(rows)),
            **{f"alpha.{r['name']}": float(r["alpha"]) for r in rows}, **soft}


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(-1) == y).float().mean())


@register_measure("heavy_tail_batch_size", metric="alpha_gap",
                  paper=Paper("Implicit Self-Regularization in Deep Neural Networks: Evidence from Random Matrix "
                              "Theory and Implications for Learning", 2021, "1810.01075"))
def heavy_tail_batch_size(seed: int, *, width: int = 256, small_batch: int = 8, large_batch: int = 256,
                          epochs: int = 20, lr: float = 0.05, min_evals: int = 50,
                          step_matched: bool = True) -> dict[str, float]:
    if width < min_evals or not 1 <= small_batch < large_batch or epochs < 1 or not lr > 0 or min_evals < 8:
        raise ConfigError(f"heavy_tail_batch_size: need 1 <= small_batch < large_batch, epochs >= 1, lr > 0, "
                          f"min_evals >= 8 and width >= min_evals; got width={width}, small_batch={small_batch}, "
                          f"large_batch={large_batch}, epochs={epochs}, lr={lr}, min_evals={min_evals}")
    task = Digits()
    train, test = task.train_batch(0, torch.Generator()), task.eval_set("test")
    x, y = train.inputs, train.targets
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and kind to a shared machine
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            init = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
        out = {f"init.{k}": v for k, v in _read(init, min_evals, seed).items() if "." not in k}
        runs = [("small", small_batch, epochs), ("large", large_batch, epochs)]
        if step_matched:  # a control, not ruled: the large batch given the small batch's number of steps
            runs.append(("large_step_matched", large_batch, epochs * math.ceil(len(y) / small_batch)
                         // math.ceil(len(y) / large_batch)))
        for label, batch, n_epochs in runs:
            model = _train(seed, width, batch, n_epochs, lr, x, y)
            out.update({f"{label}.{k}": v for k, v in _read(model, min_evals, seed).items()})
            out[f"{label}.train_accuracy"] = _accuracy(model, x, y)
            out[f"{label}.test_accuracy"] = _accuracy(model, test.inputs, test.targets)
    finally:
        torch.set_num_threads(threads)
    return {"alpha_gap": out["small.alpha"] - out["large.alpha"], **out}
