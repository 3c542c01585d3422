r"""Do optimizers reach qualitatively different solutions? AdamW, SGD and Muon on one task.

Paper: Pascanu, Lyle, Modoranu, Elosegui Borras, Alistarh, Veličković, Chandar, De & Martens,
"Optimizers Qualitatively Alter Solutions And We Should Leverage This", 2025, arXiv:2507.12224:
in non-convex networks the optimizer "not only influences the rate of convergence, but also the
qualitative properties of the learned solutions"; a non-diagonal preconditioner (Shampoo there)
reaches solutions with different representations (less interference) than diagonal AdamW and SGD.

The measurement trains the classifier backbone on digits from one initialization with each of
AdamW, SGD (momentum 0.9) and Muon (method ``muon``: the hidden matrices' momentum orthogonalised,
the rest AdamW), each at the learning rate of its grid with the best validation accuracy (ties:
validation loss), and measures the solutions with ``lens.spectra.effective_rank`` (Roy &
Vetterli's exp-entropy of the normalised singular values):

- ``*_update_erank``: mean over the hidden MLP matrices of erank(W_T − W_0) / min(A, B), the
  effective rank of what training added, as a fraction of its largest possible value;
- ``*_weight_erank``: the same for W_T;
- ``*_feature_erank``: erank of the centred test-set features entering the head, / d_model;
- ``*_class_cosine``: mean cosine similarity between the class means of those features (off the
  diagonal), the paper's cross-class similarity;
- ``*_test_accuracy``, ``*_lr``.

``error = max(adamw_update_erank, sgd_update_erank) / muon_update_erank``: below 1 when Muon's
solution moved the weights along more directions than both diagonal optimizers'.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...lens import spectra
from ...registry import Paper
from ...spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from ...tasks import build_task
from . import register_measure
from ._fit import fit, initial_model, one_thread

PAPER = Paper("Optimizers Qualitatively Alter Solutions And We Should Leverage This", 2025, "2507.12224")
OPTIMIZERS = ("adamw", "sgd", "muon")


def hidden_matrices(model: nn.Module) -> dict[str, Tensor]:
    """The residual blocks' 2-D weights (the matrices Muon updates), by name."""
    return {n: p.detach().double() for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("layers.")}


def mean_erank_fraction(mats: list[Tensor]) -> float:
    return sum(spectra.effective_rank(w) / min(w.shape) for w in mats) / len(mats)


def head_features(model: nn.Module, x: Tensor) -> Tensor:
    """The features entering the classifier's head (after the final norm), in eval mode."""
    store: list[Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda m, args: store.append(args[0].detach()))
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
        model.train(was)
    return store[0].double()


def class_cosine(features: Tensor, labels: Tensor) -> float:
    """Mean off-diagonal cosine similarity of the class-mean feature vectors."""
    means = torch.stack([features[labels == c].mean(0) for c in labels.unique()])
    unit = means / means.norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    k = sim.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (k * (k - 1)))


def _spec(seed: int, optimizer: str, lr: float, d_model: int, n_layers: int, steps: int, batch_size: int) -> RunSpec:
    optim = OptimSpec(name="sgd" if optimizer == "sgd" else "adamw", lr=lr, momentum=0.9,
                      warmup_steps=max(1, steps // 20))
    methods = (MethodSpec("muon"),) if optimizer == "muon" else ()
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=d_model, n_layers=n_layers),
                   optim=optim, train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0,
                                                log_every=max(1, steps // 10)),
                   seed=seed, methods=methods)


@register_measure("optimizer_solutions", metric="error", paper=PAPER)
def optimizer_solutions(seed: int, *, adamw_lrs: list[float] = (1e-3, 3e-3, 1e-2), sgd_lrs: list[float] = (0.03, 0.1, 0.3),
                        muon_lrs: list[float] = (1e-3, 3e-3, 1e-2), d_model: int = 64, n_layers: int = 2,
                        steps: int = 500, batch_size: int = 64) -> dict[str, float]:
    grids = {"adamw": [float(v) for v in adamw_lrs], "sgd": [float(v) for v in sgd_lrs],
             "muon": [float(v) for v in muon_lrs]}
    if any(not g or any(not (v > 0 and math.isfinite(v)) for v in g) for g in grids.values()):
        raise ConfigError(f"optimizer_solutions: each lr grid needs >= 1 finite value > 0; got {grids}")
    if d_model < 2 or n_layers < 1 or steps < 1 or batch_size < 1:
        raise ConfigError("optimizer_solutions: need d_model >= 2, n_layers, steps, batch_size >= 1")
    task = build_task("digits")
    test = task._make_eval_set("test")
    out: dict[str, float] = {}
    with one_thread():
        start = hidden_matrices(initial_model(_spec(seed, "adamw", 1e-3, d_model, n_layers, steps, batch_size), task))
        for name in OPTIMIZERS:
            best = None
            for lr in grids[name]:
                model, res, status = fit(_spec(seed, name, lr, d_model, n_layers, steps, batch_size), task)
                val = res.get("val", {}) if status == "done" else {}
                key = (val.get("accuracy", -math.inf), -val.get("loss", math.inf))
                if best is None or key > best[0]:
                    best = (key, lr, model, res)
            _, lr, model, res = best
            end = hidden_matrices(model)
            feats = head_features(model, test.inputs)
            out[f"{name}_lr"] = lr
            out[f"{name}_test_accuracy"] = res.get("test", {}).get("accuracy", math.nan)
            out[f"{name}_update_erank"] = mean_erank_fraction([end[k] - start[k] for k in start])
            out[f"{name}_weight_erank"] = mean_erank_fraction(list(end.values()))
            out[f"{name}_feature_erank"] = spectra.effective_rank(feats - feats.mean(0)) / d_model
            out[f"{name}_class_cosine"] = class_cosine(feats, test.targets)
    out["error"] = max(out["adamw_update_erank"], out["sgd_update_erank"]) / out["muon_update_erank"]
    return out
